"""Training-step time of the presets' networks in NCHW against NHWC (``channels_last``) layout.

    python benchmarks/bench_layout.py                          # textures3 and digits, all threads
    python benchmarks/bench_layout.py --threads 1 --out        # per-core numbers, written to
                                                               # benchmarks/results/<date>_<device>_t1_layout.json

One step is ``Trainer.train_step`` of the preset's main head (pair generation, forward of both views,
IIC loss, backward, Adam), the unit the trainer's budgets count. Both layouts train the same freshly
seeded net on the same batches; their steps alternate (NCHW, NHWC, NCHW, ...) so that drift in the
machine's speed hits both alike. Reports the median step time of each layout and their ratio.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing
from iic_fast.train import Trainer, preset  # noqa: E402
from bench_loss import git_sha  # noqa: E402
from bench_pairs import _sync, device_slug  # noqa: E402


def step_timer(trainer: Trainer, head: str, device: str):
    """A function that runs one training step of ``head`` and returns its wall time in seconds."""
    def run() -> float:
        _sync(device)
        t = time.perf_counter()
        trainer.train_step(head)
        _sync(device)
        return time.perf_counter() - t
    return run


def compare(name: str, device: str, steps: int, warmup: int, workdir: str) -> dict:
    """Median step time of preset ``name`` with channels_last off and on."""
    timers = {}
    for layout, channels_last in (("NCHW", False), ("NHWC", True)):
        config = preset(name, channels_last=channels_last, device=device, progress=False)
        trainer = Trainer(config, out=os.path.join(workdir, f"{name}_{layout}"))
        timers[layout] = step_timer(trainer, "B", device)  # B: the main head (the only one of one-head nets)
    times = {layout: [] for layout in timers}
    for i in range(warmup + steps):
        for layout, run in timers.items():
            t = run()
            if i >= warmup:
                times[layout].append(t)
    med = {layout: statistics.median(ts) for layout, ts in times.items()}
    row = {"preset": name, "steps": steps, "NCHW_ms": 1e3 * med["NCHW"], "NHWC_ms": 1e3 * med["NHWC"],
           "speedup": med["NCHW"] / med["NHWC"]}
    print(f"| {name:10s} | {device_slug(device):12s} | {torch.get_num_threads():7d} | {row['NCHW_ms']:9.1f} | "
          f"{row['NHWC_ms']:9.1f} | {row['speedup']:5.2f}x |", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["textures3", "digits"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per layout")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per layout first")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", nargs="?", const=os.path.join(HERE, "results"), default=None,
                    help="write <dir>/<date>_<device>_t<threads>_layout.json (default dir benchmarks/results)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("| preset | device | threads | NCHW ms/step | NHWC ms/step | NHWC speedup |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as workdir:
        rows = [compare(name, args.device, args.steps, args.warmup, workdir) for name in args.presets]
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        slug = f"{device_slug(args.device)}_t{torch.get_num_threads()}"
        path = os.path.join(args.out, f"{datetime.date.today().isoformat()}_{slug}_layout.json")
        meta = {"device": device_slug(args.device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                "git_sha": git_sha(), "warmup": args.warmup, "rows": rows}
        with open(path, "w") as f:
            json.dump(meta, f, indent=1)
        print("wrote", path)


if __name__ == "__main__":
    main()
