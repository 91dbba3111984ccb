"""Training-step time of the presets' networks in NCHW against NHWC (``channels_last``) layout.

    python benchmarks/bench_layout.py                          # textures3 and digits, all threads
    python benchmarks/bench_layout.py --threads 1 --repeats 5  # one thread, five repeats of the comparison
    python benchmarks/bench_layout.py --quick                  # digits, 2 steps: a dry run

One step is ``Trainer.train_step`` of the preset's main head (pair generation, forward of both views,
IIC loss, backward, Adam), the unit the trainer's budgets count. Both layouts train the same freshly
seeded net on the same batches; their steps alternate (NCHW, NHWC, NCHW, ...) so that drift in the
machine's speed hits both alike. Each repeat builds both trainers afresh and reports the median step
time of each layout and their ratio; the JSON also holds the min / median / max of the ratio over the
repeats, the spread to read any speed-up against. Writes <out>/<date>_<device>_t<threads>_layout.json
with the metadata of benchmarks/_meta.py.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing
sys.path.insert(0, HERE)
from iic_fast.train import Trainer, preset  # noqa: E402
from _meta import add_common_args, device_slug, metadata, sync, write_results  # noqa: E402


def step_timer(trainer: Trainer, head: str, device: str):
    """A function that runs one training step of ``head`` and returns its wall time in seconds."""
    def run() -> float:
        sync(device)
        t = time.perf_counter()
        trainer.train_step(head)
        sync(device)
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


def spread(rows: list[dict]) -> dict:
    """min / median / max of each preset's NHWC speed-up over the repeats."""
    out = {}
    for name in dict.fromkeys(r["preset"] for r in rows):
        ratios = [r["speedup"] for r in rows if r["preset"] == name]
        out[name] = {"repeats": len(ratios), "min": min(ratios), "median": statistics.median(ratios),
                     "max": max(ratios)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap, "digits only, 2 timed steps after 1 warm-up, 1 repeat: a dry run")
    ap.add_argument("--presets", nargs="+", default=["textures3", "digits"])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per layout")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per layout first")
    ap.add_argument("--repeats", type=int, default=3, help="independent comparisons per preset (spread reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.quick:
        args.presets, args.steps, args.warmup, args.repeats = ["digits"], 2, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = metadata(args.device)
    print("| preset | device | threads | NCHW ms/step | NHWC ms/step | NHWC speedup |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as workdir:
        rows = [{"repeat": i, **compare(name, args.device, args.steps, args.warmup, os.path.join(workdir, str(i)))}
                for i in range(args.repeats) for name in args.presets]
    summary = spread(rows)
    for name, s in summary.items():
        print(f"{name}: NHWC speed-up min {s['min']:.2f}x / median {s['median']:.2f}x / max {s['max']:.2f}x "
              f"over {s['repeats']} repeats")
    write_results(args.out, f"t{torch.get_num_threads()}_layout", args.device,
                  {"steps": args.steps, "warmup": args.warmup, "rows": rows, "speedup_spread": summary}, meta)


if __name__ == "__main__":
    main()
