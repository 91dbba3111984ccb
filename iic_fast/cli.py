"""``iic-fast``: train IIC, re-evaluate a run, benchmark the loss.

    iic-fast train                          # Textures-3 on the CPU, under 5 minutes, accuracy ~0.90 (measured)
    iic-fast train --preset digits          # clustering on scikit-learn's 8x8 digits
    iic-fast train --preset potsdam3 --data-root data/potsdam --micro-batch 25
    iic-fast eval runs/textures3-20250101-120000
    iic-fast bench --device cuda
    iic-fast segment runs/textures3-20250101-120000 photos/ --out segmented/
    iic-fast cluster RUN_DIR photos/ --out assignments.csv
    iic-fast export RUN_DIR --format onnx
    iic-fast import-original IIC/out/555 --out runs/coco3-555

``iic-fast`` with no arguments is ``iic-fast train``. Under ``torchrun`` the same command trains with
DistributedDataParallel.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import List, Optional

from .deploy.commands import COMMANDS as DEPLOY_COMMANDS, add_parsers as add_deploy_parsers, run as run_deploy

TRAIN_EPILOG = """presets (--preset):
{table}

--set key=value overrides any config field (see iic_fast/train/config.py), e.g.
  --set lr=1e-4 --set head_schedule=A_then_B --set num_sub_heads=5 --set amp=off
  --set pairs.flip_p=0.0      (one entry of the pair-maker overrides)
Budgets: training stops at the first of max_epochs, --max-steps, --max-minutes (0 = none), then
evaluates. The run directory gets config.json, metrics.jsonl, latest.pt, best.pt, plots.png,
predictions.png and summary.json; the summary is also printed as one JSON line on stdout.
Exit status: 0 done, 2 bad arguments or data, 3 the loss or gradients became NaN/inf.

Your own images (--data DIR --task segmentation|clustering [--k K] [--input-size S]):
  Any images Pillow reads (PNG, JPEG, TIFF, BMP, WebP, ...), recursively; train/ and test/ (or val/)
  sub-folders when present, else a seeded 80/20 split. Segmentation trains on random SxS crops (default
  S 64 on the CPU, 128 on CUDA; images must be at least that big, or --set dataset_options.upscale_small=true)
  and labels are optional PNGs of class ids (255 = ignore) in DIR/.../labels/<stem>.png or, STEGO's
  layout, DIR/labels/... beside DIR/imgs/...; clustering resizes every image to S (default 64) and takes
  one sub-folder per class as labels. K: clusters of the main head (default: the number of label
  classes); the overclustering head gets 4K (segmentation) or 7K (clustering). With labels, evaluation
  is Hungarian when K equals the classes, else many-to-one; without, it reports the loss and cluster sizes.
  Defaults: grey + Sobel input (--rgb adds the colour channels), the textures3 (segmentation) or digits
  (clustering) preset's settings with SmallSegNetTwoHead / SmallClusterNetTwoHead on the CPU, and
  SegmentationNet10aTwoHead / ClusterNet5gTwoHead on CUDA (change any with --set, e.g. --set arch=...).
  S must be a multiple of 4, at least 16. Example:
    iic-fast train --data photos/ --task segmentation --k 4 --out runs/photos"""


def _train_parser(sub: argparse._SubParsersAction) -> None:
    from .train import preset_table

    p = sub.add_parser("train", help="train a preset (default: textures3)",
                       description="Train IIC with a preset's hyperparameters.",
                       epilog=TRAIN_EPILOG.format(table="\n".join("  " + r for r in preset_table())),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=None, help="preset name (listed below); default textures3")
    p.add_argument("--data-root", default=None, help="folder with the dataset's release files "
                   "(paper presets only; the embedded textures3 and digits need none)")
    own = p.add_argument_group("your own images (see below)")
    own.add_argument("--data", metavar="DIR", default=None, help="train on the images in DIR (instead of a preset)")
    own.add_argument("--task", choices=["segmentation", "clustering"], default=None, help="what to learn from DIR")
    own.add_argument("--k", type=int, default=None, help="clusters of the main head (default: the label classes)")
    own.add_argument("--input-size", type=int, default=None, help="crop side (segmentation) or image side "
                     "(clustering); default 64, 128 for segmentation on CUDA")
    own.add_argument("--rgb", action="store_true", help="keep the colour channels (default: grey + Sobel)")
    own.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images with one warning "
                     "line each (default: stop with an error naming the file)")
    p.add_argument("--out", default=None, help="run directory (default runs/<preset>-<timestamp>)")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per optimiser step (the paper's batch_sz)")
    p.add_argument("--micro-batch", type=int, default=None, help="pairs per forward pass: the IIC loss of the "
                   "whole --batch-size in the memory of this many pairs (two forward passes per step); 0 = off. "
                   "The gradient is exactly the full batch's for BatchNorm-free nets or BatchNorm in eval mode; "
                   "the paper's nets train BatchNorm in train mode, which normalises each micro-batch with its own "
                   "statistics (as the original's per-GPU BatchNorm did), so their gradient differs")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps (0 = no limit)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this many minutes of "
                   "training and evaluation, then evaluate (0 = no limit)")
    p.add_argument("--device", default=None, help="auto (default: CUDA if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=None, help="seed of weights, batches and augmentations")
    p.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue RUN_DIR from its latest.pt "
                   "exactly (same RNG streams); its config.json is used, and only budgets should be changed "
                   "(with lr_schedule=cosine, --max-steps also reshapes the learning-rate decay)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable); see below")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tensorboard", action="store_true", help="also log metrics and predictions to "
                   "RUN_DIR/tensorboard (needs pip install 'iic_fast[tensorboard]')")


def build_parser() -> argparse.ArgumentParser:
    """The ``iic-fast`` argument parser (subcommands train, eval, bench, segment, cluster, export,
    import-original)."""
    parser = argparse.ArgumentParser(prog="iic-fast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command",
                                metavar="{train,eval,bench,segment,cluster,export,import-original}")
    _train_parser(sub)
    e = sub.add_parser("eval", help="re-evaluate a run directory's checkpoint",
                       description="Re-evaluate RUN_DIR/best.pt (or latest.pt) on the preset's test "
                       "data; prints one JSON line.")
    e.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by iic-fast train")
    e.add_argument("--checkpoint", choices=["best", "latest"], default="best", help="which checkpoint (default best)")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    e.add_argument("--data-root", default=None, help="override the run's data root (paper presets)")
    b = sub.add_parser("bench", help="benchmark the segmentation loss implementations",
                       description="Runs benchmarks/bench_loss.py (from a source checkout) with any "
                       "further arguments passed on (e.g. --only small --repeats 3; see its --help); "
                       "without the script, a short built-in timing of iic_fast.segmentation_loss.")
    b.add_argument("--device", default="cpu", help="cpu or cuda")
    b.add_argument("--out", default=".", metavar="DIR", help="folder for the results JSON (default: the "
                   "current folder; never the package's source tree unless named here)")
    add_deploy_parsers(sub)
    return parser


def _train_config(args: argparse.Namespace, flags: dict) -> "TrainConfig":
    """The preset's config, or with --data the folder's (``iic_fast.train.data.folder_config``)."""
    from .train import TrainConfig, preset, resolve_device
    from .train.data import folder_config

    if not args.data:
        given = {"--task": args.task, "--k": args.k, "--input-size": args.input_size, "--rgb": args.rgb or None,
                 "--skip-bad-images": args.skip_bad_images or None}
        extra = [name for name, value in given.items() if value is not None]
        if extra:
            raise ValueError(f"{extra[0]} goes with --data DIR (your own images)")
        return preset(args.preset or "textures3", **flags)
    if args.preset or args.data_root:
        raise ValueError("--data DIR does not combine with --preset or --data-root (change settings with --set)")
    if args.task is None:
        raise ValueError("--data DIR needs --task segmentation or --task clustering")
    cuda = resolve_device(flags.get("device", "auto")).type == "cuda"
    config = folder_config(args.data, args.task, args.k, input_size=args.input_size, rgb=args.rgb, cuda=cuda,
                           skip_bad_images=args.skip_bad_images)
    return TrainConfig.from_dict({**config.to_dict(), **flags})


def _train(args: argparse.Namespace) -> int:
    from .train import NonFiniteLossError, Trainer, TrainConfig, apply_overrides

    flags = {"data_root": args.data_root, "batch_size": args.batch_size, "micro_batch": args.micro_batch,
             "max_steps": args.max_steps, "max_minutes": args.max_minutes, "device": args.device,
             "seed": args.seed}
    flags = {k: v for k, v in flags.items() if v is not None}
    if args.tensorboard:
        flags["tensorboard"] = True
    if args.no_progress:
        flags["progress"] = False
    try:
        if args.resume:
            with open(os.path.join(args.resume, "config.json"), encoding="utf-8") as f:
                config = TrainConfig.from_dict({**json.load(f), **flags})
            out = args.resume
        else:
            config = _train_config(args, flags)
            out = args.out or os.path.join("runs", f"{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}")
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(f"the run directory '{out}' is a file")
        config = apply_overrides(config, args.overrides)
        trainer = Trainer(config, out, resume=bool(args.resume))
    except (ValueError, FileNotFoundError) as error:
        print(f"iic-fast train: {error}", file=sys.stderr)
        return 2
    try:
        summary = trainer.fit()
    except NonFiniteLossError as error:
        print(f"iic-fast train: stopped at step {trainer.step}: {error}. No checkpoint was written after "
              f"the last good evaluation ({os.path.join(out, 'latest.pt')}). Try a lower lr "
              "(--set lr=...) or --set amp=off.", file=sys.stderr)
        return 3
    except KeyboardInterrupt:  # Ctrl-C: checkpoints are atomic, so the last one is whole
        print(f"iic-fast train: interrupted; 'iic-fast train --resume {out}' continues from the last checkpoint",
              file=sys.stderr)
        return 130
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if summary:
        print(json.dumps(summary), flush=True)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .train.evaluation import evaluate_run

    try:
        result = evaluate_run(args.run_dir, args.checkpoint, device=args.device, data_root=args.data_root)
    except (ValueError, FileNotFoundError) as error:
        print(f"iic-fast eval: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


def _bench(args: argparse.Namespace) -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "benchmarks", "bench_loss.py")
    if os.path.exists(script):
        # this package's checkout first on the path, installed or not
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        return subprocess.call([sys.executable, script, "--device", args.device, "--out", os.path.abspath(args.out),
                                *args.bench_args], env=env)
    import torch

    import iic_fast as iic

    # installed without the source tree: a short timing of each implementation on one small shape
    n, k, H, d = 4, 10, 64, 3
    x1 = torch.rand(n, k, H, H, device=args.device).softmax(1).requires_grad_(True)
    x2 = torch.rand(n, k, H, H, device=args.device).softmax(1).requires_grad_(True)
    for collapsed in (False, True):
        for impl in ("reference", "fft", "auto"):
            start = time.perf_counter()
            for _ in range(3):
                torch.autograd.grad(iic.segmentation_loss(x1, x2, d=d, collapsed=collapsed, impl=impl)[0], (x1, x2))
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            ms = (time.perf_counter() - start) / 3 * 1e3
            print(json.dumps({"n": n, "k": k, "H": H, "W": H, "d": d, "collapsed": collapsed, "impl": impl,
                              "fwd_bwd_ms": round(ms, 2)}))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``iic-fast`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["train", *argv]  # the default command
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.bench_args = extra  # bench passes the rest on to benchmarks/bench_loss.py
    try:  # every user error (bad value or kind of argument, missing or unreadable file, bad device): status 2
        _check_device(getattr(args, "device", None))
        if args.command in DEPLOY_COMMANDS:
            return run_deploy(args)
        return {"train": _train, "eval": _eval, "bench": _bench}[args.command](args)
    except (ValueError, TypeError, OSError) as error:
        print(f"iic-fast {args.command}: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


def _check_device(name: Optional[str]) -> None:
    """ValueError unless ``name`` is None, "auto", or a device torch knows and this machine has (torch itself
    raises RuntimeError for an unknown device type and initialises CUDA lazily, failing deep inside a run)."""
    if name in (None, "auto"):
        return
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA GPU is available on this machine (use auto or cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")


if __name__ == "__main__":
    sys.exit(main())
