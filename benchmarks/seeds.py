"""A preset over several seeds: how much its result depends on luck.

    python benchmarks/seeds.py --preset digits --seeds 0-9 --threads 2
    python benchmarks/seeds.py --preset textures3 --seeds 0-2 --out benchmarks/results
    python benchmarks/seeds.py --preset digits --seeds 0,3 --set max_steps=300   # a screening run
    python benchmarks/seeds.py --preset digits --seeds 0-9 --jobs 2               # two runs at a time
    python benchmarks/seeds.py --quick                                            # dry run: 2 seeds, 3 steps

Each seed is one ``iic-fast train --preset NAME --seed S --no-progress`` in its own process (fresh
interpreter, ``--threads`` CPU threads) into a temporary run directory. Writes
``<out>/<date>_<device>_seeds_<preset>.json`` (per seed: final test accuracy, the best-accuracy sub-head's,
the selected sub-head's training loss (does a lower loss mark a better run?), with ``candidates`` the one
chosen, every candidate's loss and the accuracy of its last evaluation (comparison only), steps run and scheduled,
whether the time budget cut the run, training and wall seconds, the load average before and after; the
spread over seeds; the metadata of benchmarks/_meta.py) and a PNG of the spread next to it. The machine's load is part of every wall time: read the ``loadavg`` fields (``--jobs`` > 1
runs share the machine's cores, which is load too). On a machine shared with other work, OpenMP threads
that spin while they wait can slow 2-thread runs several times over; ``OMP_WAIT_POLICY=PASSIVE`` in the
environment (recorded in the JSON) avoids that without changing any number.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _meta import add_common_args, metadata, write_results  # noqa: E402


def parse_seeds(text: str) -> List[int]:
    """"0-9" -> 0..9, "0,3,5" -> [0, 3, 5], "4" -> [4]; ValueError for anything else."""
    seeds: List[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"--seeds takes e.g. 0-9 or 0,3,5, got {text!r}") from None
        if last < first:
            raise ValueError(f"--seeds: empty range {part!r}")
        seeds += range(first, last + 1)
    return seeds


def run_seed(preset: str, seed: int, threads: int, device: str, overrides: List[str], workdir: str) -> dict:
    """One training run in a subprocess; its summary plus wall seconds and load averages."""
    cmd = [sys.executable, "-m", "iic_fast.cli", "train", "--preset", preset, "--seed", str(seed), "--no-progress",
           "--device", device, "--out", os.path.join(workdir, f"seed{seed}")]
    for item in overrides:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    load_before = os.getloadavg()[0]
    t = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.time() - t
    if done.returncode != 0:
        raise RuntimeError(f"seed {seed}: iic-fast train exited {done.returncode}:\n{done.stderr[-3000:]}")
    s = json.loads(done.stdout.strip().splitlines()[-1])
    last = _last_eval(s["run_dir"])
    candidates = os.path.join(s["run_dir"], "candidates")
    if "candidate" in s and os.path.isdir(candidates):  # how good the choice was (labels: comparison only)
        s["candidate_accs"] = [_last_eval(os.path.join(candidates, d))["test_acc"]
                               for d in sorted(os.listdir(candidates), key=int)]
    return {"seed": seed, "test_acc": s["test_acc"], "test_acc_best_subhead": s["test_acc_best_subhead"],
            "loss": last["subhead_losses"][last["subhead"]],
            "steps": s["steps"], "schedule_steps": s.get("schedule_steps"), "cut_by_time": s.get("cut_by_time"),
            "train_seconds": s["train_seconds"], "wall_seconds": round(wall, 2),
            "loadavg_1min_before": load_before, "loadavg_1min_after": os.getloadavg()[0],
            **{k: s[k] for k in ("candidate", "candidate_losses", "candidate_accs") if k in s}}


def _last_eval(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r["kind"] == "eval"][-1]


def spread(rows: List[dict]) -> dict:
    """min / mean / median / max / standard deviation of the final accuracy, and the mean wall time."""
    accs = [r["test_acc"] for r in rows]
    return {"seeds": len(accs), "min": min(accs), "mean": statistics.fmean(accs), "median": statistics.median(accs),
            "max": max(accs), "std": statistics.pstdev(accs),
            "wall_seconds_mean": statistics.fmean(r["wall_seconds"] for r in rows),
            "wall_seconds_max": max(r["wall_seconds"] for r in rows)}


def plot(rows: List[dict], title: str, path: str) -> None:
    """Final accuracy per seed (dots) with the mean and the minimum as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accs = [r["test_acc"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot([r["seed"] for r in rows], accs, "o", color="C0", label="final test accuracy")
    ax.axhline(statistics.fmean(accs), color="C1", label=f"mean {statistics.fmean(accs):.3f}")
    ax.axhline(min(accs), color="C3", ls="--", label=f"min {min(accs):.3f}")
    ax.set_xlabel("seed")
    ax.set_ylabel("accuracy")
    ax.set_xticks([r["seed"] for r in rows])
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap, "2 seeds of 3 steps each (digits unless --preset is given): a dry run")
    ap.add_argument("--preset", default="digits")
    ap.add_argument("--seeds", default="0-4", help="e.g. 0-9 or 0,3,5 (default 0-4)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of every run (default 2)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override passed to every run (repeatable)")
    args = ap.parse_args()
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as error:
        ap.error(str(error))
    if args.quick:
        seeds, args.overrides = seeds[:2], [*args.overrides, "max_steps=3", "eval_every=3"]
    torch.set_num_threads(args.threads)  # so the metadata's thread count is the runs'
    at_start = metadata(args.device)  # the code the runs used; "meta" is taken when the JSON is written
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")

    def one(seed: int) -> dict:
        r = run_seed(args.preset, seed, args.threads, args.device, args.overrides, workdir)
        print(f"{args.preset} seed {seed}: acc {r['test_acc']:.3f}, {r['steps']} steps, "
              f"{r['wall_seconds']:.0f} s wall (load {r['loadavg_1min_before']:.1f})", flush=True)
        return r

    with tempfile.TemporaryDirectory() as workdir, ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(one, seeds))
    summary = spread(rows)
    print(f"{args.preset}: min {summary['min']:.3f} mean {summary['mean']:.3f} max {summary['max']:.3f} "
          f"over {len(rows)} seeds", flush=True)
    path = write_results(args.out, f"seeds_{args.preset}", args.device,
                         {"preset": args.preset, "overrides": args.overrides, "threads": args.threads,
                          "jobs": args.jobs, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                          "meta_at_start": at_start, "runs": rows, "spread": summary})
    with open(path, encoding="utf-8") as f:
        commit = json.load(f)["meta"]["git_commit"][:7]
    plot(rows, f"{args.preset}, {args.threads} threads, git {commit}", path[:-len(".json")] + ".png")


if __name__ == "__main__":
    main()
