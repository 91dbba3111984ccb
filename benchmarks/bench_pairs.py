"""Throughput (pairs/s) of IIC pair generation: the batched device-side pipeline of iic_fast.data
against a per-sample PIL pipeline like the original's (torchvision-0.2.1-style ColorJitter done with
PIL ImageEnhance / HSV, numpy flips, one image at a time in DataLoader workers, then Sobel on the
stacked batch).

    python benchmarks/bench_pairs.py                     # CPU, all of torch's threads on each side
    python benchmarks/bench_pairs.py --threads 1         # one core on each side
    python benchmarks/bench_pairs.py --device cuda       # pairs delivered on the GPU
    python benchmarks/bench_pairs.py --quick             # small images: a dry run in seconds

Same cores on both sides: the batched path runs in this process with torch.set_num_threads(threads),
the baseline as the original ran it, with ``threads`` DataLoader workers (one batch per worker at a
time; steady state after a warm-up epoch). Pairs/s are reported in total and per core. Writes
<out>/<date>_<device>_pairs.json with the metadata of benchmarks/_meta.py.

Cases (paper shapes): Potsdam-3 (75 x RGBIR 200x200, jitter 0.1, flip, no Sobel), COCO-Stuff-3
(120 x RGB 128x128, default jitter, flip, RGB + Sobel), STL10 (140 images 96x96 -> tf1 + 5 tf2
views 64x64, Sobel only = 700 pairs). Both pipelines start from a uint8 CPU batch (what the
loader workers deliver) and end with float tensors on the device; the timing includes the copy.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from functools import partial

import numpy as np
import torch
from PIL import Image, ImageEnhance

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing
sys.path.insert(0, HERE)
from iic_fast.data import clustering_preset, segmentation_preset, transforms as T  # noqa: E402
from _meta import add_common_args, metadata, sync, write_results  # noqa: E402

CASES = {  # name: (kind, n images, C, H, W)
    "potsdam3": ("seg", 75, 4, 200, 200),
    "cocostuff3": ("seg", 120, 3, 128, 128),
    "stl10": ("clu", 140, 3, 96, 96),
}
QUICK_CASES = {"potsdam3": ("seg", 4, 4, 32, 32), "cocostuff3": ("seg", 4, 3, 32, 32), "stl10": ("clu", 4, 3, 96, 96)}


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


def pil_seg_sample(a: np.ndarray, jitter, sobel: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Original-style pair of one (H, W, C) uint8 image: (img1, img2) (C', H, W) float and the 2x3 affine."""
    rgb, extra = a[:, :, :3], a[:, :, 3:]
    im1 = Image.fromarray(rgb)
    im2 = pil_jitter(im1, *jitter)
    x1, x2 = np.asarray(im1), np.asarray(im2)
    if sobel:  # grey appended, replaced by Sobel on the device later
        x1 = np.concatenate([x1, np.asarray(im1.convert("L"))[:, :, None]], 2)
        x2 = np.concatenate([x2, np.asarray(im2.convert("L"))[:, :, None]], 2)
    t1 = torch.from_numpy(np.concatenate([x1, extra], 2).astype(np.float32) / 255.0).permute(2, 0, 1)
    t2 = torch.from_numpy(np.concatenate([x2, extra], 2).astype(np.float32) / 255.0).permute(2, 0, 1)
    aff = torch.eye(2, 3)
    if np.random.rand() > 0.5:
        t2 = torch.flip(t2, dims=[2])
        aff[0, :] *= -1.0
    return t1, t2, aff


def pil_clu_sample(a: np.ndarray, crop: int, size: int, repeats: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Original-style views of one (H, W, 3) uint8 image: tf1 and ``repeats`` tf2 views, (1, size, size) grey."""
    def view(tf2: bool) -> torch.Tensor:
        im = Image.fromarray(a)
        y0, x0 = random.randint(0, a.shape[0] - crop), random.randint(0, a.shape[1] - crop)
        im = im.crop((x0, y0, x0 + crop, y0 + crop)).resize((size, size), Image.BILINEAR)
        if tf2:
            if random.random() < 0.5:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
            im = pil_jitter(im, 0.4, 0.4, 0.4, 0.125)
        return torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)[None]

    return view(False), [view(True) for _ in range(repeats)]


class PerSampleDataset(torch.utils.data.Dataset):
    """The per-sample baseline as the original ran it: one item per image, batched by DataLoader workers."""

    def __init__(self, images: np.ndarray, batches: int, make) -> None:
        self.images, self.batches, self.make = images, batches, make

    def __len__(self) -> int:
        return len(self.images) * self.batches

    def __getitem__(self, i: int):
        return self.make(self.images[i % len(self.images)])


def finish_seg(batch, sobel: bool, device: str):
    """Collated per-sample pairs -> device tensors (img1, img2, affine, mask), Sobel on the device."""
    img1, img2, a21 = (t.to(device) for t in batch)
    mask = torch.ones(img1.shape[0], *img1.shape[2:], device=device)
    if sobel:
        img1 = torch.cat([img1[:, :3], T.sobel(img1[:, 3:4]), img1[:, 4:]], 1)
        img2 = torch.cat([img2[:, :3], T.sobel(img2[:, 3:4]), img2[:, 4:]], 1)
    return img1, img2, a21, mask


def finish_clu(batch, device: str):
    """Collated per-sample views -> Sobel of each on the device."""
    x1, x2s = batch
    return T.sobel(x1.to(device)), [T.sobel(x.to(device)) for x in x2s]


# ------------------------------------------------------------------ timing
def timeit(fn, device: str, repeats: int) -> float:
    """Median seconds of ``fn`` after one warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def loader_seconds_per_batch(dataset: PerSampleDataset, n: int, workers: int, finish, device: str) -> float:
    """Seconds per batch of the per-sample pipeline with ``workers`` DataLoader workers, in steady state:
    one warm-up epoch (starts the persistent workers), then one timed epoch of ``dataset.batches``."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=n, num_workers=workers,
                                         persistent_workers=workers > 0)
    for epoch in range(2):
        start = time.perf_counter()
        for batch in loader:
            finish(batch)
        sync(device)
    return (time.perf_counter() - start) / dataset.batches


def run(device: str, threads: int, repeats: int, cases: dict) -> list[dict]:
    """Pairs/s of both pipelines on every case, each on ``threads`` cores."""
    rows = []
    for name, (kind, n, c, h, w) in cases.items():
        rng = np.random.default_rng(0)
        hwc = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
        chw = torch.from_numpy(hwc).permute(0, 3, 1, 2).contiguous()
        if device.startswith("cuda"):
            chw = chw.pin_memory()
        gen = torch.Generator().manual_seed(0)
        batches = max(2, repeats) * threads  # every worker busy for at least `repeats` batches
        if kind == "seg":
            seg = segmentation_preset("potsdam" if name.startswith("potsdam") else "cocostuff")

            def batched():
                return seg(chw.to(device, non_blocking=True), None, gen)

            dataset = PerSampleDataset(hwc, batches, partial(pil_seg_sample, jitter=seg.jitter, sobel=seg.sobel))
            finish, pairs = partial(finish_seg, sobel=seg.sobel, device=device), n
        else:
            clu = clustering_preset("stl10")

            def batched():
                return clu(chw.to(device, non_blocking=True), gen)

            crop = min(64, h)
            dataset = PerSampleDataset(hwc, batches, partial(pil_clu_sample, crop=crop, size=crop,
                                                             repeats=clu.repeats))
            finish, pairs = partial(finish_clu, device=device), n * clu.repeats
        tb = timeit(batched, device, repeats)
        tp = loader_seconds_per_batch(dataset, n, threads, finish, device)
        rows.append({"case": name, "pairs_per_batch": pairs, "batched_s": tb, "per_sample_pil_s": tp,
                     "batched_pairs_per_s": pairs / tb, "per_sample_pairs_per_s": pairs / tp,
                     "batched_pairs_per_s_per_core": pairs / tb / threads,
                     "per_sample_pairs_per_s_per_core": pairs / tp / threads, "speedup": tp / tb})
        print(f"| {device:5s} | {name:11s} | {pairs:4d} | {pairs / tp / threads:10.0f} | "
              f"{pairs / tb / threads:10.0f} | {tp / tb:6.1f}x |", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap, "small images (4 per batch, 32x32 / 96x96), 2 repeats: a dry run in seconds")
    ap.add_argument("--repeats", type=int, default=5, help="timed batches of the batched path (median)")
    ap.add_argument("--threads", type=int, default=None,
                    help="cores for each side (default: torch's thread count): the batched path runs with "
                    "torch.set_num_threads(threads), the per-sample baseline with that many DataLoader workers")
    args = ap.parse_args()
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    meta = metadata(args.device)
    cases = QUICK_CASES if args.quick else CASES
    print("| device | case | pairs/batch | per-sample PIL pairs/s/core | batched pairs/s/core | speedup |")
    print("|---|---|---|---|---|---|")
    rows = run(args.device, threads, 2 if args.quick else args.repeats, cases)
    write_results(args.out, "pairs", args.device, {"threads_each_side": threads, "repeats": args.repeats,
                                                   "results": rows}, meta)


if __name__ == "__main__":
    main()
