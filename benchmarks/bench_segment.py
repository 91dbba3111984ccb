"""Throughput of ``RunModel.segment`` (images/s) on 512 x 512 images, the path of ``iic-fast segment``.

    python benchmarks/bench_segment.py                          # CPU: textures3's small net, the paper's net
    python benchmarks/bench_segment.py --device cuda --amp      # GPU, also in bfloat16
    python benchmarks/bench_segment.py --quick                  # small net, 2 images: a dry run

Each network is an untrained run of its preset written to a temporary run directory (the weights do not
change the time) and loaded with ``load_run``: ``small`` is textures3's SmallSegNetTwoHead (grey + Sobel
input), ``paper`` is cocostuff3's SegmentationNet10aTwoHead (RGB + Sobel, the original's border ring).
Images are random uint8 RGB 512 x 512 (converted to the run's channels by ``segment``), given as a list,
``--batch-size`` per forward pass; time = preprocessing, network, softmax and argmax, results on the CPU.
One batch warms up; the median of ``--repeats`` timed passes over ``--images`` images is reported.
Writes <out>/<date>_<device>_segment[-<nets>].json with the metadata of benchmarks/_meta.py.
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
from iic_fast.deploy.inference import build_network, load_run, save_run  # noqa: E402
from iic_fast.train import preset  # noqa: E402
from _meta import add_common_args, metadata, sync, write_results  # noqa: E402

NETS = {"small": ("textures3", {}), "paper": ("cocostuff3", {})}


def measure(name: str, device: str, args: argparse.Namespace, amp: bool, folder: str) -> dict:
    """images/s of ``segment`` for the net ``name`` (see the module docstring)."""
    preset_name, overrides = NETS[name]
    config = preset(preset_name, **overrides)
    run_dir = os.path.join(folder, name)
    if not os.path.isdir(run_dir):
        torch.manual_seed(0)
        save_run(run_dir, config, build_network(config).state_dict())
    model = load_run(run_dir, device=device, amp=amp, max_pixels=args.size * args.size)
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, args.size, args.size), dtype=torch.uint8, generator=gen)
              for _ in range(args.images)]
    model.segment(images[:args.batch_size], batch_size=args.batch_size)  # warm-up
    times = []
    for _ in range(args.repeats):
        sync(device)
        start = time.perf_counter()
        model.segment(images, batch_size=args.batch_size)
        sync(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    row = {"net": name, "preset": preset_name, "arch": config.arch, "amp": amp, "size": args.size,
           "images": args.images, "batch_size": args.batch_size, "repeats": args.repeats,
           "seconds": [round(t, 4) for t in times], "images_per_s": round(args.images / seconds, 3),
           "ms_per_image": round(1e3 * seconds / args.images, 2)}
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, "small net, 2 images of 128 x 128, one repeat: a dry run")
    parser.add_argument("--nets", default="small,paper", help="comma-separated: small, paper (default both)")
    parser.add_argument("--size", type=int, default=512, help="image side (default 512)")
    parser.add_argument("--images", type=int, default=8, help="images per timed pass (default 8)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    parser.add_argument("--amp", action="store_true", help="also time bfloat16 (autocast)")
    args = parser.parse_args()
    if args.quick:
        args.nets, args.size, args.images, args.batch_size, args.repeats = "small", 128, 2, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = metadata(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.nets.split(","):
            for amp in (False, True) if args.amp else (False,):
                rows.append(measure(name, args.device, args, amp, folder))
    tag = "" if args.nets == "small,paper" else "-" + args.nets.replace(",", "-")
    write_results(args.out, "segment" + tag, args.device, {"results": rows}, meta)


if __name__ == "__main__":
    main()
