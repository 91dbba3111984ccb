"""Peak memory, time and gradient of one exact IIC training step of SegmentationNet10a, by micro-batch size.

    python benchmarks/bench_memory.py                    # CPU: batch 75 at reduced resolution (32x32, d=3)
    python benchmarks/bench_memory.py --device cuda      # GPU: batch 75 at the paper's 200x200, d=10
    python benchmarks/bench_memory.py --quick            # toy sizes, seconds (a dry run of the script)
    python benchmarks/bench_memory.py --batchnorm train  # what per-micro-batch BatchNorm statistics change

The net is SegmentationNet10aTwoHead (4 input channels, head A, k=24). A micro-batch equal to the batch is
the ordinary full-batch step; smaller ones use JointAccumulator (two forward passes). By default BatchNorm
runs in eval mode, the configuration whose gradient is exactly the full batch's; each case reports the
relative difference ||g - g_full|| / ||g_full|| of its parameter gradient from the full-batch case. With
``--batchnorm train`` each micro-batch is normalised with its own statistics (as the original's per-GPU
BatchNorm), so the gradients differ, and the difference is measured the same way.

Each case runs in a fresh subprocess: one warm-up step, then ``--steps`` timed steps (median reported).
Peak memory is the growth of the process's peak resident set (``ru_maxrss``, which includes the warm-up
step) beyond the net and inputs on the CPU, ``torch.cuda.max_memory_allocated`` beyond them on a GPU.
Writes <out>/<date>_<device>_memory.json with the metadata of benchmarks/_meta.py.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _meta import add_common_args, metadata, sync, write_results  # noqa: E402

QUICK = {"batch": 6, "micro": "6,3,2", "size": 16, "d": 1, "steps": 1}


def train_step(net, img1, img2, d: int, micro: int) -> float:
    """One IIC step (head A) over the whole batch in micro-batches, gradients into ``.grad``; returns the loss."""
    import iic_fast as iic

    def outputs(a, b):
        return net(a, head="A")[0], net(b, head="A")[0].flip(3)

    net.zero_grad(set_to_none=True)
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


def _memory_now(device: str) -> int:
    """Peak bytes so far: the process's peak RSS on the CPU, the allocator's peak on a GPU."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_case(args: argparse.Namespace, micro: int, grad_file: str) -> dict:
    """Warm-up + ``args.steps`` steps at one micro-batch size (inside a fresh process); saves the gradient."""
    from iic_fast.models import build

    torch.manual_seed(0)
    net = build("SegmentationNet10aTwoHead", in_channels=4, input_sz=args.size, output_k_A=24,
                output_k_B=3).to(args.device)
    net.train(args.batchnorm == "train")
    img1 = torch.rand(args.batch, 4, args.size, args.size, device=args.device)
    img2 = img1.flip(3)
    sync(args.device)
    if torch.device(args.device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(args.device)
        base = torch.cuda.memory_allocated(args.device)
    else:
        base = _memory_now(args.device)
    times = []
    for _ in range(1 + args.steps):
        start = time.perf_counter()
        loss = train_step(net, img1, img2, args.d, micro)
        sync(args.device)
        times.append(time.perf_counter() - start)
    peak = _memory_now(args.device) - base
    torch.save(torch.cat([p.grad.flatten().cpu() for p in net.parameters() if p.grad is not None]), grad_file)
    return {"micro_batch": micro, "loss": loss, "warmup_step_s": times[0], "step_s": statistics.median(times[1:]),
            "step_s_all": times[1:], "peak_mb": max(peak, 0) / 2**20}


def _case_in_subprocess(args: argparse.Namespace, micro: int, grad_file: str) -> dict:
    cmd = [sys.executable, __file__, "--case", str(micro), "--grad-file", grad_file, "--device", args.device,
           "--batch", str(args.batch), "--size", str(args.size), "--d", str(args.d), "--steps", str(args.steps),
           "--batchnorm", args.batchnorm]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"micro_batch": micro, "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, "toy sizes (batch 6, micro 6/3/2, 16x16, d=1, 1 timed step): a dry run in seconds")
    parser.add_argument("--batch", type=int, default=75, help="pairs per step (default 75, the paper's)")
    parser.add_argument("--micro", default="75,25,5", help="comma-separated micro-batch sizes (default 75,25,5)")
    parser.add_argument("--size", type=int, default=None, help="input side (default 32 on CPU, 200 on GPU)")
    parser.add_argument("--d", type=int, default=None, help="displacement radius (default 3 on CPU, 10 on GPU)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up (median reported)")
    parser.add_argument("--batchnorm", choices=["eval", "train"], default="eval",
                        help="eval (default): the exact-gradient configuration; train: per-micro-batch statistics")
    parser.add_argument("--case", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--grad-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    cuda = torch.device(args.device).type == "cuda"
    args.size = args.size or (200 if cuda else 32)
    args.d = args.d if args.d is not None else (10 if cuda else 3)
    return args


def main() -> None:
    args = _parse()
    if args.case is not None:
        print(json.dumps(run_case(args, args.case, args.grad_file)))
        return
    meta = metadata(args.device)
    rows, grads = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for micro in (int(m) for m in args.micro.split(",")):
            grad_file = os.path.join(tmp, f"grad_{micro}.pt")
            row = _case_in_subprocess(args, micro, grad_file)
            if "error" not in row:
                grads[micro] = torch.load(grad_file)
            rows.append(row)
            print(json.dumps(row), flush=True)
    ref = args.batch if args.batch in grads else next(iter(grads), None)
    for r in rows:
        if "error" not in r and ref is not None:
            r["grad_rel_diff_vs_full"] = float((grads[r["micro_batch"]] - grads[ref]).norm() / grads[ref].norm())
            r["peak_vs_full"] = r["peak_mb"] / next(x["peak_mb"] for x in rows if x.get("micro_batch") == ref)
    network = "SegmentationNet10aTwoHead, 4 input channels, head A (k=24), BatchNorm in " + args.batchnorm + " mode"
    write_results(args.out, "memory" if args.batchnorm == "eval" else "memory-bntrain", args.device,
                  {"network": network, "batch": args.batch, "size": args.size, "d": args.d,
                   "batchnorm": args.batchnorm, "steps": args.steps, "reference_micro_batch": ref, "results": rows},
                  meta)


if __name__ == "__main__":
    main()
