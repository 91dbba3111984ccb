"""``iic-fast segment`` and ``iic-fast cluster``: a trained run applied to image files.

INPUT arguments are files, folders (searched recursively for image files; an ``--out`` folder inside
them is skipped) or glob patterns. Outputs never overwrite an input. Under ``torchrun`` (WORLD_SIZE > 1) rank r takes inputs
``r::WORLD_SIZE`` and runs on its LOCAL_RANK GPU, so a large folder scales to several GPUs / machines.
User errors print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import sys
from typing import Any, Dict, List, Sequence, Tuple

OUTPUTS = {"labels": "_labels.png", "overlay": "_overlay.png", "probs": "_probs.npy"}


class UsageError(ValueError):
    """A bad command line (printed as one line, exit status 2)."""


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _scan(root: str, out: str) -> List[Tuple[str, str]]:
    """Image files below ``root`` as folder datasets find them (hidden entries and ``labels`` folders
    skipped) with their names (relative path without extension), leaving out the folder ``out`` when it
    lies strictly inside ``root`` (an output folder is not an input)."""
    from ..data.folder import find_images

    return [(p, os.path.splitext(os.path.relpath(p, root))[0]) for p in find_images(root)
            if not (out and out != root and _inside(p, out))]


def expand_inputs(inputs: Sequence[str], out: str = "") -> List[Tuple[str, str]]:
    """(absolute path, output name) of every input image; the name is the path relative to its folder
    argument without the extension (the file's stem for file and glob arguments). Folders are searched
    recursively for image extensions, leaving out an output folder ``out`` strictly inside them (when
    ``out`` is the folder itself, its images are inputs, so ``plan_outputs`` refuses to overwrite
    them). UsageError for an argument that names nothing, or no image at all."""
    found: List[Tuple[str, str]] = []
    for item in inputs:
        if os.path.isdir(item):
            found += _scan(os.path.abspath(item), out)
        elif os.path.isfile(item):
            found.append((os.path.abspath(item), os.path.splitext(os.path.basename(item))[0]))
        elif glob.has_magic(item):
            matches = [m for m in sorted(glob.glob(item, recursive=True)) if os.path.isfile(m)]
            if not matches:
                raise UsageError(f"no file matches {item}")
            found += [(os.path.abspath(m), os.path.splitext(os.path.basename(m))[0]) for m in matches]
        else:
            raise UsageError(f"no such file or folder: {item}")
    if not found:
        raise UsageError(f"no image files in {', '.join(inputs)}")
    return sorted(set(found))


def plan_outputs(items: Sequence[Tuple[str, str]], out: str, probs: bool) -> Dict[str, Dict[str, str]]:
    """input path -> {"labels", "overlay"[, "probs"]: output path}. UsageError when two inputs would
    write the same file or an output would overwrite an input (nothing is written then)."""
    inputs = {os.path.realpath(p) for p, _ in items}
    kinds = [k for k in OUTPUTS if probs or k != "probs"]
    plan: Dict[str, Dict[str, str]] = {}
    owner: Dict[str, str] = {}
    for path, name in items:
        plan[path] = {k: os.path.join(out, name + OUTPUTS[k]) for k in kinds}
        for target in plan[path].values():
            real = os.path.realpath(target)
            if real in inputs:
                raise UsageError(f"refusing to overwrite the input image {target}; choose another --out")
            if real in owner:
                raise UsageError(f"{owner[real]} and {path} would both write {target}; segment them into "
                                 "different --out folders")
            owner[real] = path
    return plan


def _shard(items: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """This process's share under torchrun (RANK / WORLD_SIZE), all of them otherwise."""
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    return items[rank::world]


def _out_folder(out: str) -> str:
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file, not a folder")
    return os.path.abspath(out)


def _read_all(paths: Sequence[str], channels: int, skip_bad: bool) -> List[Tuple[str, Any]]:
    """(path, uint8 (channels, H, W)) for readable images; a bad one is a UsageError, or one warning line
    with ``skip_bad``."""
    from .images import read_image

    good = []
    for p in paths:
        try:
            good.append((p, read_image(p, channels)))
        except ValueError as error:  # DatasetError, naming the file
            if not skip_bad:
                raise UsageError(f"{error} (--skip-bad-images skips such files)") from None
            print(f"iic-fast: warning: skipping {p}: {error}", file=sys.stderr)
    return good


def _image_size(path: str) -> Tuple[int, int]:
    """(H, W) from the file header (no decoding), for batching images of one size; (0, 0) if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (OSError, SyntaxError, ValueError):
        return 0, 0


def segment_command(args: argparse.Namespace) -> int:
    """``iic-fast segment``: label PNG + overlay PNG (+ probabilities .npy) per input image."""
    from tqdm.auto import tqdm

    from .images import save_labels, save_overlay, save_probs
    from .inference import load_run

    out = _out_folder(args.out)
    items = _shard(expand_inputs(args.inputs, out))
    plan = plan_outputs(items, out, args.probs)
    model = load_run(args.run_dir, args.checkpoint, args.device, amp=args.amp, max_pixels=args.max_pixels)
    model.check_task("segmentation")
    channels = min(model.spec.raw_channels, 3)  # files give grey or RGB
    # one size per batch where possible; files Pillow cannot open sort first: they stop a run before any output
    paths = sorted(plan, key=_image_size)
    with tqdm(total=len(paths), unit="image", disable=args.no_progress, desc="segment") as bar:
        for start in range(0, len(paths), args.batch_size):
            batch = _read_all(paths[start:start + args.batch_size], channels, args.skip_bad_images)
            if batch:
                images = [img.float() / 255.0 for _, img in batch]
                results = model.segment(images, probs=True, batch_size=args.batch_size)
                for (path, _), image, p in zip(batch, images, results):
                    labels = p.argmax(0).numpy()
                    os.makedirs(os.path.dirname(plan[path]["labels"]), exist_ok=True)
                    save_labels(labels, model.k, plan[path]["labels"])
                    save_overlay(image, labels, model.k, plan[path]["overlay"])
                    if args.probs:
                        save_probs(p.numpy(), plan[path]["probs"])
            bar.update(len(paths[start:start + args.batch_size]))
    return 0


def cluster_command(args: argparse.Namespace) -> int:
    """``iic-fast cluster``: a CSV of path, cluster, confidence (one row per readable input image)."""
    from .inference import load_run

    out = os.path.abspath(args.out)
    if os.path.isdir(out):
        raise UsageError(f"--out {args.out} is a folder; cluster writes a CSV file")
    items = _shard(expand_inputs(args.inputs))
    if os.path.realpath(out) in {os.path.realpath(p) for p, _ in items}:
        raise UsageError(f"refusing to overwrite the input {args.out}; choose another --out")
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    if world > 1:  # one CSV per rank
        root, ext = os.path.splitext(out)
        out = f"{root}.rank{rank}{ext}"
    model = load_run(args.run_dir, args.checkpoint, args.device, amp=args.amp)
    model.check_task("clustering")
    channels = min(model.spec.raw_channels, 3)
    rows = []
    for start in range(0, len(items), args.batch_size):
        batch = _read_all([p for p, _ in items[start:start + args.batch_size]], channels, args.skip_bad_images)
        if batch:
            ids, confidence = model.cluster([img for _, img in batch], batch_size=args.batch_size)
            rows += [(p, int(i), f"{float(c):.6f}") for (p, _), i, c in zip(batch, ids, confidence)]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "cluster", "confidence"])
        writer.writerows(rows)
    os.replace(tmp, out)
    print(f"iic-fast cluster: {len(rows)} images -> {out}", file=sys.stderr)
    return 0


def export_command(args: argparse.Namespace) -> int:
    """``iic-fast export``: the run as a TorchScript or ONNX file (prints its path)."""
    from .export import export_run

    print(export_run(args.run_dir, args.format, args.out, checkpoint=args.checkpoint), flush=True)
    return 0


def import_command(args: argparse.Namespace) -> int:
    """``iic-fast import-original``: the original release's model folder as a run directory."""
    from .original import import_original

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out} is a file, not a folder")
    print(os.path.dirname(import_original(args.model_dir, args.out, weights=args.weights)), flush=True)
    return 0


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _common(p: argparse.ArgumentParser, batch: int) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (iic-fast train or import-original)")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, folders (recursive) or globs")
    p.add_argument("--checkpoint", choices=["best", "latest"], default="best", help="default best")
    p.add_argument("--batch-size", type=_positive, default=batch, help=f"images per forward pass (default {batch})")
    p.add_argument("--device", default="auto", help="auto (default: CUDA if available; LOCAL_RANK's GPU "
                   "under torchrun), cpu, cuda:1, ...")
    p.add_argument("--amp", action="store_true", help="run the network in bfloat16 (float16 on GPUs without it)")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images with one warning "
                   "line each (default: stop with an error naming the file)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The segment, cluster, export and import-original subcommands."""
    s = sub.add_parser("segment", help="segment image files with a trained run",
                       description="Writes per input image OUT/<name>_labels.png (palette PNG, pixel value = "
                       "cluster id), OUT/<name>_overlay.png (clusters over the image) and with --probs "
                       "OUT/<name>_probs.npy (float32 (k, H, W)); <name> is the path below a folder argument. "
                       "Any image size (large images run in overlapping tiles). Never overwrites an input. "
                       "Under torchrun the inputs are split across the processes. " + _EXIT)
    _common(s, 4)
    s.add_argument("--out", required=True, help="output folder (created)")
    s.add_argument("--probs", action="store_true", help="also write the probabilities")
    s.add_argument("--max-pixels", type=_positive, default=1024 * 1024, help="larger images run in tiles of about "
                   "this many pixels (default 1048576)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    c = sub.add_parser("cluster", help="cluster image files with a trained run",
                       description="Writes a CSV with columns path, cluster, confidence (probability of the "
                       "cluster); each image is resized whole to the run's input. Under torchrun each process "
                       "writes OUT with .rank<r> before the extension. " + _EXIT)
    _common(c, 256)
    c.add_argument("--out", required=True, help="CSV file to write, e.g. assignments.csv")
    e = sub.add_parser("export", help="export a run for deployment (TorchScript or ONNX)",
                       description="Writes the network with its preprocessing (Sobel, ...) and the argmax of the "
                       "selected sub-head: input float (n, C, H, W) in [0, 1], output int64 cluster ids "
                       "(n, H, W) or (n,). ONNX needs pip install 'iic_fast[onnx]'. " + _EXIT)
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript", help="default torchscript")
    e.add_argument("--out", default=None, help="file (default RUN_DIR/model.torchscript.pt or RUN_DIR/model.onnx)")
    e.add_argument("--checkpoint", choices=["best", "latest"], default="best", help="default best")
    i = sub.add_parser("import-original", help="make a run directory from an original IIC release model",
                       description="Reads MODEL_DIR/config.pickle and best_net.pytorch (or best.pytorch) of a "
                       "model trained by github.com/xu-ji/IIC and writes a run directory (config.json, best.pt) "
                       "for segment, cluster, eval and export. " + _EXIT)
    i.add_argument("model_dir", metavar="MODEL_DIR")
    i.add_argument("--out", required=True, help="run directory to write")
    i.add_argument("--weights", default=None, help="weights file (default MODEL_DIR/best_net.pytorch)")


_EXIT = "Exit status: 0 done, 2 bad arguments or input files."
COMMANDS = {"segment": segment_command, "cluster": cluster_command, "export": export_command,
            "import-original": import_command}


def run(args: argparse.Namespace) -> int:
    """Runs the subcommand ``args.command``; user errors print one line and return 2."""
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as error:
        print(f"iic-fast {args.command}: {error}", file=sys.stderr)
        return 2
