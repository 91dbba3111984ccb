"""Benchmark the IIC segmentation loss: every implementation against the conv-trick reference, same run.

    python benchmarks/bench_loss.py                       # CPU: paper shapes scaled (n=4) and small shapes
    python benchmarks/bench_loss.py --device cuda         # GPU: paper scale (n=75) and COCO scale (n=120)
    python benchmarks/bench_loss.py --quick               # toy shape, seconds (a dry run of the script)

Each case runs in a fresh subprocess so that its peak memory is its own: peak RSS growth (ru_maxrss) on
the CPU, torch.cuda.max_memory_allocated on a GPU, both beyond the inputs. Times are medians after one
warm-up call. Writes <out>/<date>_<device>_loss.json (metadata of benchmarks/_meta.py: git commit, CPU
model and ISA or GPU name, torch/CUDA versions, threads, load, command line) and prints the README's table
of it (benchmarks/readme_tables.py).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _meta import add_common_args, device_name, metadata, sync, write_results  # noqa: E402
from readme_tables import loss_table  # noqa: E402

SHAPES = {  # name: (n, k, H, W, d)
    "cpu": [("paper-k24/cpu", 4, 24, 200, 200, 10), ("paper-k3/cpu", 4, 3, 200, 200, 10),
            ("small", 8, 10, 64, 64, 3)],
    "cuda": [("paper-k24", 75, 24, 200, 200, 10), ("paper-k3", 75, 3, 200, 200, 10),
             ("coco-k15", 120, 15, 128, 128, 10)],
    "quick": [("toy", 2, 3, 24, 24, 2)],
}
IMPLS = {"collapsed": ["reference", "fft", "kernel"], "uncollapsed": ["reference", "fft", "kernel", "auto"]}


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

    sync(device)
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    fwd_bwd()  # first call: also the warm-up
    sync(device)
    if torch.device(device).type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base

    def timed(fn):
        times = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, "one toy shape (n=2, k=3, 24x24, d=2), 2 repeats: a dry run in seconds")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    parser.add_argument("--ref-repeats", type=int, default=2, help="repetitions for the slow conv trick")
    parser.add_argument("--only", default=None, help="run only shapes whose name contains this text")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        n, k, H, W, d, collapsed, impl = json.loads(args.case)
        print(json.dumps(run_case(n, k, H, W, d, collapsed, impl, args.device, args.repeats)))
        return
    meta = metadata(args.device)
    if args.quick:
        args.repeats, args.ref_repeats = 2, 1
    shapes = SHAPES["quick" if args.quick else torch.device(args.device).type]
    results = []
    for shape in shapes:
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
    report = {"repeats": args.repeats, "ref_repeats": args.ref_repeats, "results": results}
    print(f"{device_name(args.device)}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("\n".join(loss_table(report)))
    write_results(args.out, "loss", args.device, report, meta)


if __name__ == "__main__":
    main()
