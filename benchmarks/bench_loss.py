"""Benchmark the IIC segmentation loss: every implementation against the conv-trick reference, same run.

    python benchmarks/bench_loss.py                       # CPU: paper shapes scaled (n=4) and small shapes
    python benchmarks/bench_loss.py --device cuda         # GPU: paper scale (n=75) and COCO scale (n=120)

Each case runs in a fresh subprocess so that its peak memory is its own: peak RSS growth on the CPU,
torch.cuda.max_memory_allocated on a GPU, both beyond the inputs. Writes
benchmarks/results/<date>_<device>.json (device, torch version, threads, git sha) and prints a markdown table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = {  # name: (n, k, H, W, d)
    "cpu": [("paper-k24/cpu", 4, 24, 200, 200, 10), ("paper-k3/cpu", 4, 3, 200, 200, 10),
            ("small", 8, 10, 64, 64, 3)],
    "cuda": [("paper-k24", 75, 24, 200, 200, 10), ("paper-k3", 75, 3, 200, 200, 10),
             ("coco-k15", 120, 15, 128, 128, 10)],
}
IMPLS = {"collapsed": ["reference", "fft", "kernel"], "uncollapsed": ["reference", "fft", "kernel", "auto"]}
LABELS = {("collapsed", "fft"): "box+GEMM (PyTorch)", ("uncollapsed", "fft"): "FFT (PyTorch)",
          ("collapsed", "reference"): "conv trick", ("uncollapsed", "reference"): "conv trick"}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_case(n: int, k: int, H: int, W: int, d: int, collapsed: bool, impl: str, device: str,
             repeats: int) -> dict:
    """Times fwd and fwd+bwd of iic_fast.segmentation_loss on one shape (run inside a fresh process)."""
    import iic_fast as iic

    g = torch.Generator(device=device).manual_seed(0)
    x1 = torch.randn(n, k, H, W, device=device, generator=g).softmax(1).requires_grad_(True)
    x2 = torch.randn(n, k, H, W, device=device, generator=g).softmax(1).requires_grad_(True)
    input_bytes = 2 * x1.numel() * x1.element_size()

    def fwd():
        return iic.segmentation_loss(x1, x2, d=d, collapsed=collapsed, impl=impl)[0]

    def fwd_bwd():
        torch.autograd.grad(fwd(), (x1, x2))

    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    fwd_bwd()  # first call: also the warm-up
    _sync(device)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base

    def timed(fn):
        times = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3

    chosen = iic.ops.choose_impl(x1, d, collapsed, impl)
    return {"fwd_ms": timed(fwd), "fwd_bwd_ms": timed(fwd_bwd), "peak_extra_mb": max(peak, 0) / 2**20,
            "input_mb": input_bytes / 2**20, "algorithm": chosen}


def _subprocess_case(args: argparse.Namespace, shape, mode: str, impl: str) -> dict:
    name, n, k, H, W, d = shape
    cmd = [sys.executable, __file__, "--case", json.dumps([n, k, H, W, d, mode == "collapsed", impl]),
           "--device", args.device, "--repeats", str(args.repeats if impl != "reference" else args.ref_repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    import platform
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=HERE).stdout.strip()
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    parser.add_argument("--ref-repeats", type=int, default=2, help="repetitions for the slow conv trick")
    parser.add_argument("--only", default=None, help="run only shapes whose name contains this text")
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results/<date>_<device>.json)")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        n, k, H, W, d, collapsed, impl = json.loads(args.case)
        print(json.dumps(run_case(n, k, H, W, d, collapsed, impl, args.device, args.repeats)))
        return

    import iic_fast as iic

    results = []
    for shape in SHAPES[args.device]:
        if args.only and args.only not in shape[0]:
            continue
        for mode, impls in IMPLS.items():
            rows = []
            for impl in impls:
                row = {"shape": shape[0], "n": shape[1], "k": shape[2], "H": shape[3], "W": shape[4],
                       "d": shape[5], "mode": mode, "impl": impl, **_subprocess_case(args, shape, mode, impl)}
                rows.append(row)
                print(json.dumps(row), flush=True)
            ref = rows[0].get("fwd_bwd_ms")
            for row in rows:
                if ref and "fwd_bwd_ms" in row:
                    row["speedup_fwd_bwd"] = ref / row["fwd_bwd_ms"]
            results += rows
    tag = "cpu" if args.device == "cpu" else device_name("cuda").replace(" ", "-")
    out = args.out or os.path.join(HERE, "results", f"{datetime.date.today()}_{tag}.json")
    report = {"device": device_name(args.device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "git_sha": git_sha(), "build": iic.build_info(), "date": str(datetime.date.today()),
              "results": results}
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    print(markdown_table(report))
    print(f"wrote {out}")


def markdown_table(report: dict) -> str:
    lines = [f"Device: {report['device']}, torch {report['torch']}, git {report['git_sha']}", "",
             "| shape (n, k, H, W, d) | loss | implementation | fwd ms | fwd+bwd ms | speed-up | peak extra MB |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in report["results"]:
        label = LABELS.get((r["mode"], r["impl"]), r["impl"] if r["impl"] != "auto" else f"auto ({r.get('algorithm')})")
        shape = f"{r['shape']} ({r['n']}, {r['k']}, {r['H']}, {r['W']}, {r['d']})"
        if "error" in r:
            lines.append(f"| {shape} | {r['mode']} | {label} | error: {r['error'][:60]} | | | |")
            continue
        lines.append(f"| {shape} | {r['mode']} | {label} | {r['fwd_ms']:.1f} | {r['fwd_bwd_ms']:.1f} | "
                     f"{r.get('speedup_fwd_bwd', float('nan')):.1f}x | {r['peak_extra_mb']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
