"""Throughput (pairs/s) of IIC pair generation: the batched device-side pipeline of iic_fast.data
against a per-sample PIL pipeline like the original's (torchvision-0.2.1-style ColorJitter done with
PIL ImageEnhance / HSV, numpy flips, one image at a time, then Sobel on the stacked batch).

    python benchmarks/bench_pairs.py                     # CPU, plus CUDA when available
    python benchmarks/bench_pairs.py --threads 1         # per-core CPU numbers
    python benchmarks/bench_pairs.py --device cuda --out # also writes benchmarks/results/<date>_<device>_pairs.json

Cases (paper shapes): Potsdam-3 (75 x RGBIR 200x200, jitter 0.1, flip, no Sobel), COCO-Stuff-3
(120 x RGB 128x128, default jitter, flip, RGB + Sobel), STL10 (140 images 96x96 -> tf1 + 5 tf2
views 64x64, Sobel only = 700 pairs). Both pipelines start from a uint8 CPU batch (what the
loader workers deliver) and end with float tensors on the device; the timing includes the copy.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import re
import statistics
import time

import sys

import numpy as np
import torch
from PIL import Image, ImageEnhance

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing
from iic_fast.data import clustering_preset, segmentation_preset, transforms as T

CASES = {  # name: (kind, n images, C, H, W)
    "potsdam3": ("seg", 75, 4, 200, 200),
    "cocostuff3": ("seg", 120, 3, 128, 128),
    "stl10": ("clu", 140, 3, 96, 96),
}


# ------------------------------------------------------------------ per-sample PIL baseline
def pil_jitter(img: Image.Image, b: float, c: float, s: float, h: float) -> Image.Image:
    """torchvision 0.2.1 ColorJitter on a PIL image: random factors, random order."""
    ops = []
    if b > 0:
        f = random.uniform(max(0, 1 - b), 1 + b)
        ops.append(lambda im: ImageEnhance.Brightness(im).enhance(f))
    if c > 0:
        fc = random.uniform(max(0, 1 - c), 1 + c)
        ops.append(lambda im: ImageEnhance.Contrast(im).enhance(fc))
    if s > 0:
        fs = random.uniform(max(0, 1 - s), 1 + s)
        ops.append(lambda im: ImageEnhance.Color(im).enhance(fs))
    if h > 0:
        fh = random.uniform(-h, h)

        def hue(im: Image.Image) -> Image.Image:
            hh, ss, vv = im.convert("HSV").split()
            np_h = np.array(hh, dtype=np.uint8)
            with np.errstate(over="ignore"):
                np_h += np.uint8(int(fh * 255) % 256)
            return Image.merge("HSV", (Image.fromarray(np_h, "L"), ss, vv)).convert("RGB")

        ops.append(hue)
    random.shuffle(ops)
    for op in ops:
        img = op(img)
    return img


def baseline_seg(batch: np.ndarray, jitter, sobel: bool, device: str):
    """Original-style per-sample segmentation pairs; batch uint8 (n, H, W, C) numpy."""
    i1, i2, affs = [], [], []
    for a in batch:
        rgb, extra = a[:, :, :3], a[:, :, 3:]
        im1 = Image.fromarray(rgb)
        im2 = pil_jitter(im1, *jitter)
        x1, x2 = np.asarray(im1), np.asarray(im2)
        if sobel:  # grey appended, replaced by Sobel on the device later
            x1 = np.concatenate([x1, np.asarray(im1.convert("L"))[:, :, None]], 2)
            x2 = np.concatenate([x2, np.asarray(im2.convert("L"))[:, :, None]], 2)
        x1 = np.concatenate([x1, extra], 2).astype(np.float32) / 255.0
        x2 = np.concatenate([x2, extra], 2).astype(np.float32) / 255.0
        t1, t2 = torch.from_numpy(x1).permute(2, 0, 1), torch.from_numpy(x2).permute(2, 0, 1)
        aff = torch.eye(2, 3)
        if np.random.rand() > 0.5:
            t2 = torch.flip(t2, dims=[2])
            aff[0, :] *= -1.0
        i1.append(t1), i2.append(t2), affs.append(aff)
    img1, img2 = torch.stack(i1).to(device), torch.stack(i2).to(device)
    a21 = torch.stack(affs).to(device)
    mask = torch.ones(len(batch), *batch.shape[1:3], device=device)
    if sobel:
        img1 = torch.cat([img1[:, :3], T.sobel(img1[:, 3:4]), img1[:, 4:]], 1)
        img2 = torch.cat([img2[:, :3], T.sobel(img2[:, 3:4]), img2[:, 4:]], 1)
    return img1, img2, a21, mask


def baseline_clu(batch: np.ndarray, crop: int, size: int, repeats: int, device: str):
    """Original-style per-sample tf1 / tf2 views; batch uint8 (n, H, W, 3) numpy."""
    def view(a: np.ndarray, tf2: bool) -> torch.Tensor:
        im = Image.fromarray(a)
        y0, x0 = random.randint(0, a.shape[0] - crop), random.randint(0, a.shape[1] - crop)
        im = im.crop((x0, y0, x0 + crop, y0 + crop)).resize((size, size), Image.BILINEAR)
        if tf2:
            if random.random() < 0.5:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
            im = pil_jitter(im, 0.4, 0.4, 0.4, 0.125)
        return torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)[None]

    def finish(ts):
        return T.sobel(torch.stack(ts).to(device))

    x1 = finish([view(a, False) for a in batch])
    return x1, [finish([view(a, True) for a in batch]) for _ in range(repeats)]


# ------------------------------------------------------------------ timing
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timeit(fn, device: str, repeats: int) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(device: str, repeats: int) -> list[dict]:
    rows = []
    for name, (kind, n, c, h, w) in CASES.items():
        rng = np.random.default_rng(0)
        hwc = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
        chw = torch.from_numpy(hwc).permute(0, 3, 1, 2).contiguous()
        if device.startswith("cuda"):
            chw = chw.pin_memory()
        gen = torch.Generator().manual_seed(0)
        if kind == "seg":
            seg = segmentation_preset("potsdam" if name.startswith("potsdam") else "cocostuff")

            def batched():
                return seg(chw.to(device, non_blocking=True), None, gen)

            def base():
                return baseline_seg(hwc, seg.jitter, seg.sobel, device)

            pairs = n
        else:
            clu = clustering_preset("stl10")

            def batched():
                return clu(chw.to(device, non_blocking=True), gen)

            def base():
                return baseline_clu(hwc, 64, 64, clu.repeats, device)

            pairs = n * clu.repeats
        tb, tp = timeit(batched, device, repeats), timeit(base, device, max(1, repeats // 2))
        rows.append({"case": name, "pairs_per_batch": pairs, "batched_s": tb, "per_sample_pil_s": tp,
                     "batched_pairs_per_s": pairs / tb, "per_sample_pairs_per_s": pairs / tp,
                     "speedup": tp / tb})
        print(f"| {device:5s} | {name:11s} | {pairs:4d} | {pairs / tp:10.0f} | {pairs / tb:10.0f} | "
              f"{tp / tb:6.1f}x |", flush=True)
    return rows


def device_slug(device: str) -> str:
    if device.startswith("cuda"):
        return "cuda-" + re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name()).strip("-")
    return f"cpu{os.cpu_count()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", action="append", help="cpu and/or cuda (default: cpu, and cuda if available)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (1 gives per-core numbers on a shared machine)")
    ap.add_argument("--out", nargs="?", const=os.path.join(HERE, "results"), default=None,
                    help="write <dir>/<date>_<device>_pairs.json (default dir benchmarks/results)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    print("| device | case | pairs/batch | per-sample PIL pairs/s | batched pairs/s | speedup |")
    print("|---|---|---|---|---|---|")
    for dev in devices:
        rows = run(dev, args.repeats)
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            path = os.path.join(args.out, f"{datetime.date.today().isoformat()}_{device_slug(dev)}_pairs.json")
            meta = {"device": device_slug(dev), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cpu_count": os.cpu_count(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
                    "repeats": args.repeats, "results": rows}
            with open(path, "w") as f:
                json.dump(meta, f, indent=1)
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
