"""Batched, device-side image ops used to build IIC pairs (plain PyTorch, no per-sample Python).

Conventions: images are (n, C, H, W) float in [0, 1] (``as_float`` converts uint8). Random
parameters are drawn per sample with a ``torch.Generator`` (CPU by default: only n numbers per op
are drawn, then moved to the images' device), so the same seed gives the same pairs on CPU and GPU.
Affine matrices are (n, 2, 3) in ``F.affine_grid`` normalised coordinates with
``align_corners=True`` (like the original on PyTorch 0.4): ``warp(x, A)(p) = x(A p)``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

#: Sobel kernels of the original (cross-correlation, zero padding 1).
SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))
#: Horizontal flip as an affine map in normalised coordinates.
FLIP_AFFINE = ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
_LUMA = (0.299, 0.587, 0.114)  # PIL 'L' / cv2 RGB2GRAY / torchvision weights


def as_float(x: Tensor) -> Tensor:
    """uint8 (any shape) -> float32 / 255; floating tensors are returned unchanged."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else (x if x.is_floating_point() else x.float())


def rand(n: int, generator: torch.Generator | None, device: torch.device | str) -> Tensor:
    """(n,) uniform [0, 1) drawn on the generator's device, returned on ``device``."""
    gdev = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(n, generator=generator, device=gdev).to(device, non_blocking=True)


def uniform(n: int, lo: float, hi: float, generator: torch.Generator | None, device) -> Tensor:
    """(n,) uniform [lo, hi)."""
    return lo + (hi - lo) * rand(n, generator, device)


def rgb_to_grey(x: Tensor) -> Tensor:
    """(n, 3, H, W) -> (n, 1, H, W) luma 0.299 R + 0.587 G + 0.114 B (1-channel input passes)."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x[:, :3] * w).sum(1, keepdim=True)


def sobel(grey: Tensor) -> Tensor:
    """(n, 1, H, W) -> (n, 2, H, W) = [dx, dy]: cross-correlation with Gx, Gy, zero padding 1."""
    w = torch.tensor((SOBEL_X, SOBEL_Y), dtype=grey.dtype, device=grey.device).unsqueeze(1)
    return F.conv2d(grey, w, padding=1)


def sobel_process(x: Tensor, colour_channels: int = 3, include_rgb: bool = True) -> Tensor:
    """Replace the colour channels' grey by Sobel channels, as the original ``sobel_process``.

    x: (n, C, H, W) whose first ``colour_channels`` (3 RGB, or 1 grey) are colour and the rest
    extra channels (e.g. Potsdam IR). Returns (n, C', H, W) = [colour if include_rgb] + [dx, dy]
    + [extra]: e.g. RGB -> [R,G,B,dx,dy] or [dx,dy]; RGBIR -> [R,G,B,dx,dy,IR]; grey -> [g,dx,dy]."""
    colour, extra = x[:, :colour_channels], x[:, colour_channels:]
    parts = ([colour] if include_rgb else []) + [sobel(rgb_to_grey(colour)), extra]
    return torch.cat(parts, 1)


# ------------------------------------------------------------------ colour jitter
def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """(n, 3, H, W) RGB in [0, 1], shift (n,) in [-0.5, 0.5] of a turn -> hue-rotated RGB.

    Exact HSV hue rotation (as PIL/torchvision) without materialising HSV: with v = max,
    C = max - min and h6 = 6 h, channel c_j = v - C clamp(min(k, 4 - k), 0, 1), k = (j + h6) mod 6
    for j = 5, 3, 1 (R, G, B)."""
    r, g, b = x.unbind(1)
    v, m = x.amax(1), x.amin(1)
    c = v - m
    cs = torch.where(c > 0, c, torch.ones_like(c))
    h6 = torch.where(v == r, (g - b) / cs, torch.where(v == g, 2.0 + (b - r) / cs, 4.0 + (r - g) / cs))
    h6 = h6 + 6.0 * shift.view(-1, 1, 1)
    j = torch.tensor((5.0, 3.0, 1.0), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = torch.remainder(j + h6.unsqueeze(1), 6.0)
    return v.unsqueeze(1) - c.unsqueeze(1) * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


def _blend(x: Tensor, f: Tensor, degenerate: Tensor) -> Tensor:
    return (f.view(-1, 1, 1, 1) * x + (1 - f.view(-1, 1, 1, 1)) * degenerate).clamp_(0.0, 1.0)


def adjust_brightness(x: Tensor, f: Tensor) -> Tensor:
    """Blend with black: clamp(f x). f: (n,)."""
    return _blend(x, f, torch.zeros((), dtype=x.dtype, device=x.device))


def adjust_contrast(x: Tensor, f: Tensor) -> Tensor:
    """Blend with the per-image mean grey level. f: (n,)."""
    return _blend(x, f, rgb_to_grey(x).mean((1, 2, 3), keepdim=True))


def adjust_saturation(x: Tensor, f: Tensor) -> Tensor:
    """Blend with the grey image (no-op for 1-channel images). f: (n,)."""
    return x if x.shape[1] == 1 else _blend(x, f, rgb_to_grey(x))


def jitter_params(
    n: int, brightness: float, contrast: float, saturation: float, hue: float,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Per-sample jitter draws on CPU (torchvision ColorJitter semantics): factors uniform in
    [max(0, 1 - v), 1 + v], hue shift uniform in [-hue, hue], and a random order of the 4 ops.

    Returns {"brightness", "contrast", "saturation", "hue"}: (n,) float32; "order": (n, 4) int64."""
    def factor(v: float) -> Tensor:
        return uniform(n, max(0.0, 1.0 - v), 1.0 + v, generator, "cpu")

    if not 0.0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue}")
    gdev = generator.device if generator is not None else torch.device("cpu")
    p = {"brightness": factor(brightness), "contrast": factor(contrast), "saturation": factor(saturation),
         "hue": uniform(n, -hue, hue, generator, "cpu")}
    p["order"] = torch.rand(n, 4, generator=generator, device=gdev).argsort(1).cpu()
    return p


_CPU_CHUNK_BYTES = 1 << 21  # ~2 MB per chunk keeps the CPU passes in cache


def color_jitter(
    x: Tensor, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.125,
    *, generator: torch.Generator | None = None, params: dict[str, Tensor] | None = None,
) -> Tensor:
    """Per-sample colour jitter of (n, 3 or 1, H, W) images in [0, 1] -> same shape, new tensor.

    torchvision ColorJitter semantics: per-sample factors and a random order of the four ops,
    each op clamped to [0, 1]; saturation and hue do nothing on 1-channel images (as PIL on 'L').
    Pass ``params`` from ``jitter_params`` to reuse draws. On CPU the batch is processed in
    cache-sized chunks (results do not depend on the chunking)."""
    n, c = x.shape[:2]
    if c not in (1, 3):
        raise ValueError(f"color_jitter takes 1 or 3 channels, got {c}")
    p = params if params is not None else jitter_params(n, brightness, contrast, saturation, hue, generator)
    p = {k: v.cpu() for k, v in p.items()}
    if x.device.type == "cpu" and n > 1:
        per = max(1, _CPU_CHUNK_BYTES // max(1, x[0].numel() * x.element_size()))
        if per < n:
            return torch.cat([_jitter(x[i : i + per], {k: v[i : i + per] for k, v in p.items()})
                              for i in range(0, n, per)])
    return _jitter(x, p)


def _jitter(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    n, c, h, w = x.shape
    dev, dt = x.device, x.dtype
    order = p["order"]  # on CPU: which op runs in which round is known without a device sync
    onehot = F.one_hot(order, 4).to(torch.float64)  # (n, round, op)
    fb, fc, fs = (p[k].double() for k in ("brightness", "contrast", "saturation"))
    luma = torch.tensor(_LUMA, dtype=torch.float64) if c == 3 else torch.ones(1, dtype=torch.float64)
    luma_d = luma.to(dev, dt)
    eye = torch.eye(c, dtype=torch.float64)
    do_hue = c == 3 and bool((p["hue"] != 0).any())
    y = x.reshape(n, c, h * w)
    owned = False
    for k in range(4):
        sb, sc, ss = onehot[:, k, 0], onehot[:, k, 1], onehot[:, k, 2] * (c == 3)
        if bool((sb + sc + ss).any()):
            # brightness, contrast and saturation are per-sample affine colour maps
            # x -> M x + o: one batched 3x3 product per round instead of many passes
            scale = 1.0 + sb * (fb - 1.0) + sc * (fc - 1.0) + ss * (fs - 1.0)
            M = scale.view(-1, 1, 1) * eye + (ss * (1.0 - fs)).view(-1, 1, 1) * luma.view(1, 1, -1)
            o = torch.zeros(n, c, 1, dtype=dt, device=dev)
            if bool(sc.any()):  # contrast blends with the current mean grey level
                mean_grey = (y.mean(2) * luma_d).sum(1)
                o = o + ((sc * (1.0 - fc)).to(dev, dt) * mean_grey).view(-1, 1, 1)
            y = torch.baddbmm(o, M.to(dev, dt), y).clamp_(0.0, 1.0)
            owned = True
        if do_hue:
            idx = (order[:, k] == 3).nonzero().flatten()
            if len(idx):
                if not owned:  # never write into the caller's tensor
                    y, owned = y.clone(), True
                idx_d = idx.to(dev)
                sub = y.index_select(0, idx_d).view(-1, 3, h, w)
                y.index_copy_(0, idx_d, adjust_hue(sub, p["hue"][idx].to(dev, dt)).view(-1, 3, h * w))
    return (y if owned else y.clone()).view(n, c, h, w)


# ------------------------------------------------------------------ geometry
def identity_affine(n: int, device=None, dtype=torch.float32) -> Tensor:
    """(n, 2, 3) identity matrices."""
    return torch.eye(2, 3, device=device, dtype=dtype).expand(n, 2, 3).clone()


def warp(x: Tensor, theta: Tensor, mode: str = "bilinear") -> Tensor:
    """out(p) = x(theta p) with zero padding: F.grid_sample(x, F.affine_grid(theta), align_corners=True).

    x: (n, C, H, W); theta: (n, 2, 3). Returns (n, C, H, W)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=True)


def random_affine(
    n: int, rot_deg: tuple[float, float] = (-30.0, 30.0), shear_deg: tuple[float, float] = (-10.0, 10.0),
    scale: tuple[float, float] = (0.8, 1.2), generator: torch.Generator | None = None, device=None,
) -> tuple[Tensor, Tensor]:
    """Original ``random_affine``: A1->2 = [[cos a sc, -sin(a+s) sc, 0], [sin a sc, cos(a+s) sc, 0]].

    Returns (A1to2, A2to1), each (n, 2, 3) float32 on ``device``; A2to1 is the exact inverse.
    x2 = warp(x1, A1to2) and warp(x2, A2to1) ~ x1 (up to interpolation, inside the view)."""
    a = torch.deg2rad(uniform(n, *rot_deg, generator, "cpu").double())
    s = torch.deg2rad(uniform(n, *shear_deg, generator, "cpu").double())
    sc = uniform(n, *scale, generator, "cpu").double()
    lin = torch.stack((torch.stack((a.cos() * sc, -(a + s).sin() * sc), 1),
                       torch.stack((a.sin() * sc, (a + s).cos() * sc), 1)), 1)  # (n, 2, 2)
    z = torch.zeros(n, 2, 1, dtype=torch.float64)
    a12 = torch.cat((lin, z), 2)
    a21 = torch.cat((torch.linalg.inv(lin), z), 2)  # in float64 so the inverse is exact in fp32
    return a12.float().to(device), a21.float().to(device)


def random_crop(
    tensors: list[Tensor], size: int, generator: torch.Generator | None = None
) -> list[Tensor]:
    """Same random integer window (size x size) per sample for every tensor in ``tensors``.

    Each tensor is (n, ..., H, W) with the same n, H, W (e.g. images and masks). Exact copy, no
    interpolation. Returns the cropped tensors (n, ..., size, size)."""
    n, (h, w) = tensors[0].shape[0], tensors[0].shape[-2:]
    if size > h or size > w:
        raise ValueError(f"crop {size} larger than input {h}x{w}")
    dev = tensors[0].device
    oy = (rand(n, generator, "cpu") * (h - size + 1)).long().clamp_(max=h - size).to(dev)
    ox = (rand(n, generator, "cpu") * (w - size + 1)).long().clamp_(max=w - size).to(dev)
    ar = torch.arange(size, device=dev)
    ys, xs = (oy[:, None] + ar)[:, :, None], (ox[:, None] + ar)[:, None, :]
    bi = torch.arange(n, device=dev)[:, None, None]
    out = []
    for t in tensors:
        tt = t.movedim((-2, -1), (1, 2))  # (n, H, W, ...)
        out.append(tt[bi, ys, xs].movedim((1, 2), (-2, -1)).contiguous())
    return out


def crop_resize_theta(
    in_hw: tuple[int, int], out_size: int, boxes: Tensor, flip: Tensor | None = None,
    rot_rad: Tensor | None = None,
) -> Tensor:
    """Sampling matrices (n, 2, 3) for grid_sample with ``align_corners=False`` that rotate the
    whole image about its centre (``rot_rad``), crop ``boxes`` (n, 4) = (y0, x0, h, w) in pixels,
    resize the crop to out_size x out_size (half-pixel centres, like PIL/cv2 resize) and mirror
    the output where ``flip``. Everything in float64 then cast to float32."""
    n = boxes.shape[0]
    H, W = in_hw
    S = float(out_size)
    b = boxes.double()
    y0, x0, bh, bw = b.unbind(1)
    eye = torch.eye(3, dtype=torch.float64).expand(n, 3, 3).clone()
    C = eye.clone()
    C[:, 0, 0], C[:, 0, 2] = bw / S, x0 + 0.5 * bw / S - 0.5
    C[:, 1, 1], C[:, 1, 2] = bh / S, y0 + 0.5 * bh / S - 0.5
    M = C
    if flip is not None:
        Fm = eye.clone()
        fl = flip.cpu().bool()
        Fm[fl, 0, 0], Fm[fl, 0, 2] = -1.0, S - 1.0
        M = M @ Fm
    if rot_rad is not None:
        cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
        c, s = rot_rad.double().cos(), rot_rad.double().sin()
        R = eye.clone()
        R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1] = c, -s, s, c
        R[:, 0, 2] = cx - c * cx + s * cy
        R[:, 1, 2] = cy - s * cx - c * cy
        M = R @ M
    n_in = torch.tensor([[2.0 / W, 0, 1.0 / W - 1], [0, 2.0 / H, 1.0 / H - 1], [0, 0, 1]], dtype=torch.float64)
    n_out_inv = torch.tensor([[S / 2, 0, (S - 1) / 2], [0, S / 2, (S - 1) / 2], [0, 0, 1]], dtype=torch.float64)
    return (n_in @ M @ n_out_inv)[:, :2].float()


def sample_crops(x: Tensor, theta: Tensor, out_size: int) -> Tensor:
    """Apply ``crop_resize_theta`` matrices: (n, C, H, W) -> (n, C, out, out), bilinear, zero fill."""
    grid = F.affine_grid(theta.to(x.device, x.dtype), [x.shape[0], x.shape[1], out_size, out_size],
                         align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


__all__ = [
    "FLIP_AFFINE", "SOBEL_X", "SOBEL_Y", "adjust_brightness", "adjust_contrast", "adjust_hue",
    "adjust_saturation", "as_float", "color_jitter", "crop_resize_theta", "identity_affine",
    "jitter_params", "rand", "random_affine", "random_crop", "rgb_to_grey", "sample_crops", "sobel",
    "sobel_process", "uniform", "warp",
]
