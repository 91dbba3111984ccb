"""Peak memory and time of one exact training step of SegmentationNet10a at batch 75 pairs, by micro-batch size.

    python benchmarks/bench_memory.py                    # CPU: reduced resolution (default 32x32, d=3)
    python benchmarks/bench_memory.py --device cuda      # GPU: the paper's 200x200, d=10, k=24 head

A micro-batch of 75 is the ordinary full-batch step; smaller ones use JointAccumulator (two passes) and give
the same gradient. Each case runs in a fresh subprocess; memory is peak RSS growth on the CPU and
torch.cuda.max_memory_allocated on a GPU. Writes benchmarks/results/<date>_<device>_memory.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_loss import device_name, git_sha  # noqa: E402


def train_step(net, img1, img2, d: int, micro: int) -> float:
    """One exact IIC step (head A, k=24) over the whole batch in micro-batches; returns the loss."""
    import iic_fast as iic

    def outputs(a, b):
        return net(a, head="A")[0], net(b, head="A")[0].flip(3)

    if micro >= img1.shape[0]:
        loss, _ = iic.segmentation_loss(*outputs(img1, img2), d=d)
        loss.backward()
        return loss.item()
    acc = iic.JointAccumulator(d=d)
    pairs = list(zip(img1.split(micro), img2.split(micro)))
    with torch.no_grad():
        for a, b in pairs:
            acc.add(*outputs(a, b))
    loss, _ = acc.loss()
    for a, b in pairs:
        acc.backward(*outputs(a, b))
    return loss.item()


def run_case(batch: int, micro: int, size: int, d: int, device: str) -> dict:
    from iic_fast.models import build

    torch.manual_seed(0)
    net = build("SegmentationNet10aTwoHead", in_channels=4, input_sz=size, output_k_A=24, output_k_B=3).to(device)
    img1 = torch.rand(batch, 4, size, size, device=device)
    img2 = img1.flip(3)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    train_step(net, img1, img2, d, micro)
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"batch": batch, "micro_batch": micro, "size": size, "d": d, "step_s": time.perf_counter() - start,
            "peak_mb": peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=75)
    parser.add_argument("--micro", default="75,25,5", help="comma-separated micro-batch sizes")
    parser.add_argument("--size", type=int, default=None, help="input side (default 32 on CPU, 200 on GPU)")
    parser.add_argument("--d", type=int, default=None, help="displacement radius (default 3 on CPU, 10 on GPU)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.size or (200 if args.device == "cuda" else 32)
    d = args.d if args.d is not None else (10 if args.device == "cuda" else 3)
    if args.case:
        print(json.dumps(run_case(args.batch, int(args.case), size, d, args.device)))
        return
    rows = []
    for micro in (int(m) for m in args.micro.split(",")):
        cmd = [sys.executable, __file__, "--case", str(micro), "--device", args.device, "--batch", str(args.batch),
               "--size", str(size), "--d", str(d)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        row = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {
            "micro_batch": micro, "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    full = next((r["peak_mb"] for r in rows if r.get("micro_batch") == args.batch and "peak_mb" in r), None)
    for r in rows:
        if full and "peak_mb" in r:
            r["peak_vs_full"] = r["peak_mb"] / full
    tag = "cpu" if args.device == "cpu" else device_name("cuda").replace(" ", "-")
    out = args.out or os.path.join(HERE, "results", f"{datetime.date.today()}_{tag}_memory.json")
    with open(out, "w") as f:
        json.dump({"device": device_name(args.device), "torch": torch.__version__, "git_sha": git_sha(),
                   "network": "SegmentationNet10aTwoHead, 4 input channels, head A (k=24)", "results": rows}, f,
                  indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
