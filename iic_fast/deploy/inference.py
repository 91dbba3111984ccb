"""Use a trained run: ``load_run(run_dir)`` returns a ``RunModel`` whose ``segment`` / ``cluster`` take
tensors, numpy arrays or PIL images and apply the run's own preprocessing (its pair maker's evaluation
transform: grey / RGB, Sobel, ...).

    model = iic_fast.load_run("runs/textures3-20260101-120000")
    labels = model.segment(image)                 # (H, W) int64 cluster ids, any image size
    ids, confidence = model.cluster(images)       # clustering runs

Segmentation is fully convolutional: an image runs whole, padded to a multiple of the network's stride
(reflection) and cropped back; an image of more than ``max_pixels`` pixels runs in square tiles that
overlap by ``overlap`` pixels, blended with linear ramps across the overlaps, so memory stays bounded.
Away from the overlaps the tiled result equals the whole-image one (for pixels farther from a tile edge
than the network's receptive field). Nets with BatchNorm in batch-statistics mode
(``batchnorm_track=False``, as the original's CIFAR10 / MNIST runs) depend on the batch and tile, as in
the original's evaluation.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..data import registry
from ..train.checkpoint import FORMAT, load, save_atomic
from ..train.config import TrainConfig
from ..train.data import build_net
from ..train.report import write_json
from ..train.runtime import autocast_factory, build_model, resolve_device
from ..train.state import TrainState
from .images import Image, as_image_list, fit_channels

__all__ = ["RunModel", "load_run", "build_network", "save_run", "DEFAULT_MAX_PIXELS", "DEFAULT_OVERLAP"]

DEFAULT_MAX_PIXELS = 1024 * 1024
DEFAULT_OVERLAP = 64
Result = Union[torch.Tensor, List[torch.Tensor]]


@dataclass(frozen=True)
class InputSpec:
    """What the network takes, from the run's config alone: raw image channels, network channels, and
    whether the dataset was read in BGR order (the original's COCO-Stuff, read with cv2)."""

    raw_channels: int
    in_channels: int
    bgr: bool = False


def _input_spec(config: TrainConfig) -> InputSpec:
    """The run's input channels, from its dataset's registry entry (no data is read)."""
    spec = registry.get(config.dataset)
    return InputSpec(raw_channels=spec.channels(config), in_channels=spec.in_channels(config),
                     bgr=config.dataset_options.get("channel_order") == "bgr")


def _ramp(n: int, overlap: int, low: bool, high: bool) -> torch.Tensor:
    """(n,) blending weights of one tile axis: 1, ramping linearly towards 0 over ``overlap`` pixels at
    the sides that border another tile (``low`` / ``high``)."""
    w = torch.ones(n)
    ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
    if low:
        w[:overlap] = ramp
    if high:
        w[n - overlap:] = ramp.flip(0)
    return w


def _starts(length: int, tile: int, overlap: int) -> List[int]:
    """Tile offsets along one axis: every ``tile - overlap`` pixels, the last tile flush with the end."""
    if length <= tile:
        return [0]
    return list(range(0, length - tile, tile - overlap)) + [length - tile]


class RunModel:
    """A trained run's network with its preprocessing and selected main-head sub-head (see the module
    docstring). Built by ``load_run``; attributes: ``config``, ``net``, ``task``, ``k`` (clusters),
    ``subhead``, ``device``, ``max_pixels``, ``overlap``."""

    def __init__(self, net: nn.Module, config: TrainConfig, spec: InputSpec, subhead: int,
                 device: torch.device, amp: Optional[torch.dtype] = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, overlap: int = DEFAULT_OVERLAP) -> None:
        self.net, self.config, self.spec, self.subhead, self.device = net.eval(), config, spec, subhead, device
        self.pairs = registry.get(config.dataset).pairs(config)
        self.task, self.k = config.task, config.output_k_B
        self._autocast = autocast_factory(amp, device)
        self.stride = 2 ** sum(isinstance(m, nn.MaxPool2d) for m in net.modules())
        if overlap < 0 or overlap % self.stride:
            raise ValueError(f"overlap must be a non-negative multiple of the network's stride {self.stride}, "
                             f"got {overlap}")
        self.tile = int(max_pixels ** 0.5) // self.stride * self.stride
        if self.tile <= overlap:
            raise ValueError(f"max_pixels {max_pixels} gives tiles of side {self.tile}, not more than the "
                             f"overlap {overlap}")
        self.max_pixels, self.overlap = max_pixels, overlap

    # ------------------------------------------------------------------ network
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W) float RGB / grey images in [0, 1] -> the network's input (the run's evaluation
        transform, after reordering RGB to BGR for runs trained on BGR data)."""
        x = fit_channels(x, self.spec.raw_channels)
        if self.spec.bgr:
            x = torch.cat((x[:, :3].flip(1), x[:, 3:]), 1)
        return self.pairs.eval_transform(x)

    @torch.no_grad()
    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Network input -> probabilities of the selected main-head sub-head, (n, k) or (n, k, H, W)."""
        with self._autocast():
            outs = self.net(x, head="B") if self.config.two_head else self.net(x)
        return outs[self.subhead].float()

    def check_task(self, task: str) -> None:
        """ValueError unless this is a ``task`` ("segmentation" / "clustering") run."""
        if self.task != task:
            raise ValueError(f"this run ({self.config.preset}, dataset {self.config.dataset}) is a {self.task} "
                             f"run; {'segment' if task == 'segmentation' else 'cluster'} needs a {task} run")

    # ------------------------------------------------------------------ segmentation
    def _tiled(self, x: torch.Tensor) -> torch.Tensor:
        """(1, C', H, W) network input (H, W multiples of the stride) -> (1, k, H, W) blended tiles."""
        H, W = x.shape[-2:]
        th, tw = min(self.tile, H), min(self.tile, W)
        out = torch.zeros(1, self.k, H, W, device=x.device)
        total = torch.zeros(1, 1, H, W, device=x.device)
        for y in _starts(H, th, self.overlap):
            wy = _ramp(th, self.overlap, y > 0, y + th < H)
            for x0 in _starts(W, tw, self.overlap):
                w = (wy[:, None] * _ramp(tw, self.overlap, x0 > 0, x0 + tw < W)[None]).to(x.device)
                out[..., y:y + th, x0:x0 + tw] += self.head(x[..., y:y + th, x0:x0 + tw]) * w
                total[..., y:y + th, x0:x0 + tw] += w
        return out / total

    def _segment_batch(self, images: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W) float images of one size -> (n, k, H, W) probabilities (on the CPU)."""
        H, W = images.shape[-2:]
        x = self.preprocess(images.to(self.device))
        ph, pw = -H % self.stride, -W % self.stride
        if ph or pw:  # the net needs multiples of its stride: mirror-pad, crop the output back
            mode = "reflect" if ph < H and pw < W else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        if H * W > self.max_pixels:
            probs = torch.cat([self._tiled(x[i:i + 1]) for i in range(x.shape[0])])
        else:
            probs = self.head(x)
        return probs[..., :H, :W].cpu()

    def segment(self, images: Union[Image, Sequence[Image]], *, probs: bool = False,
                batch_size: int = 4) -> Result:
        """Per-pixel clusters of the selected main-head sub-head.

        Args:
            images: a tensor (n, C, H, W) / (C, H, W) / (H, W), a numpy array (H, W) / (H, W, C), a PIL
                image, or a list of them (any sizes); uint8, uint16 or float in [0, 1]. Colour images
                given to a grey run are converted to luma, grey images given to an RGB run are copied
                to 3 channels.
            probs: return probabilities (k, H, W) per image instead of cluster ids.
            batch_size: images of one size per forward pass.

        Returns:
            cluster ids int64 (n, H, W) for a 4-d tensor, (H, W) for one image, a list of (H, W) for a
            list; with ``probs`` float32 with a k axis before H, W.

        Raises:
            ValueError: a clustering run, or images with channels the run cannot take.
        """
        self.check_task("segmentation")
        items, shape = as_image_list(images)
        results: List[Optional[torch.Tensor]] = [None] * len(items)
        by_size: dict = {}
        for i, im in enumerate(items):
            by_size.setdefault(tuple(im.shape), []).append(i)
        for idx in by_size.values():
            for start in range(0, len(idx), batch_size):
                chunk = idx[start:start + batch_size]
                out = self._segment_batch(torch.stack([items[i] for i in chunk]))
                for i, p in zip(chunk, out):
                    results[i] = p if probs else p.argmax(0)
        return _shaped(results, shape)

    # ------------------------------------------------------------------ clustering
    def cluster(self, images: Union[Image, Sequence[Image]], *, probs: bool = False,
                batch_size: int = 256) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Cluster of each image by the selected main-head sub-head.

        Each image (any size; kinds as in ``segment``) is resized whole (bilinear, antialiased) to the
        run's evaluation crop side, then goes through the run's evaluation transform (crop, resize to
        the network's input size, channels), as the training evaluation's images.

        Returns:
            (ids int64 (n,), confidence float32 (n,) = the probability of the chosen cluster), or with
            ``probs`` the probabilities (n, k).

        Raises:
            ValueError: a segmentation run, or images with channels the run cannot take.
        """
        self.check_task("clustering")
        items, _ = as_image_list(images)
        side = self.pairs.crop1 if isinstance(self.pairs.crop1, int) else list(self.pairs.crop1)[0]
        out = []
        for start in range(0, len(items), batch_size):
            x = torch.cat([F.interpolate(fit_channels(im[None], self.spec.raw_channels).to(self.device),
                                         size=(side, side), mode="bilinear", align_corners=False, antialias=True)
                           for im in items[start:start + batch_size]])
            out.append(self.head(self.preprocess(x)).cpu())
        p = torch.cat(out)
        if probs:
            return p
        confidence, ids = p.max(1)
        return ids, confidence


def _shaped(results: List[Any], shape: str) -> Result:
    """Per-image results -> the caller's shape ("batch": stacked, "single": the one, "list")."""
    if shape == "batch":
        return torch.stack(results)
    return results[0] if shape == "single" else results


def _checkpoint_path(run_dir: str, checkpoint: str) -> str:
    if checkpoint not in ("best", "latest"):
        raise ValueError(f"checkpoint must be 'best' or 'latest', got {checkpoint!r}")
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run directory {run_dir} does not exist (or is not a directory)")
    path = os.path.join(run_dir, f"{checkpoint}.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {run_dir} has no {checkpoint} checkpoint (a run writes "
                                "best.pt and latest.pt at its first evaluation)")
    return path


def _sizes(config: TrainConfig) -> SimpleNamespace:
    """What the network builders read of a run's data (``RunData``): input channels and size."""
    pairs = registry.get(config.dataset).pairs(config)
    input_sz = config.input_size if config.task == "segmentation" else pairs.input_size
    return SimpleNamespace(in_channels=_input_spec(config).in_channels, input_sz=input_sz)


def build_network(config: TrainConfig) -> nn.Module:
    """The run's network, untrained, on the CPU, built from its config alone (no data is read)."""
    return build_net(config, _sizes(config))


def save_run(run_dir: str, config: TrainConfig, net_state: Dict[str, torch.Tensor],
             losses: Optional[Sequence[float]] = None) -> str:
    """Writes a run directory that ``load_run`` and ``iic-fast eval`` read: ``config.json`` and ``best.pt``
    (trainer checkpoint format, step 0) with the weights ``net_state`` and the main-head sub-heads'
    ``losses`` (None: unknown, sub-head 0 is used). Returns the checkpoint's path."""
    os.makedirs(run_dir, exist_ok=True)
    write_json(os.path.join(run_dir, "config.json"), config.to_dict())
    train_state = TrainState()  # step 0, as the trainer's checkpoints hold it
    train_state.stats.last_losses = list(losses) if losses is not None else None
    state = {"format": FORMAT, "config": config.to_dict(), "net": net_state, **train_state.to_dict()}
    path = os.path.join(run_dir, "best.pt")
    save_atomic(state, path)
    return path


def load_run(run_dir: str, checkpoint: str = "best", device: str = "auto", *, subhead: Optional[int] = None,
             amp: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS, overlap: int = DEFAULT_OVERLAP) -> RunModel:
    """Loads a run directory (written by ``iic-fast train`` or ``iic-fast import-original``).

    Args:
        run_dir: the run directory.
        checkpoint: "best" or "latest".
        device: "auto" (CUDA when present, this process's LOCAL_RANK GPU under torchrun), "cpu", "cuda:1", ...
        subhead: main-head sub-head to use; None: the one with the lowest loss recorded in the checkpoint,
            the run's own choice (training loss, or the evaluation-mode loss of ``selection_passes``; 0 when
            none was recorded).
        amp: run the network in bfloat16 (float16 on GPUs without bf16); probabilities stay float32.
        max_pixels / overlap: segmentation tiling (see the module docstring).

    Raises:
        FileNotFoundError: no such directory, or no such checkpoint in it (the message names the path).
        ValueError: a checkpoint that is not a trainer checkpoint, or a bad argument.
    """
    state = load(_checkpoint_path(run_dir, checkpoint), map_location="cpu")
    config = TrainConfig.from_dict(state["config"])
    dev = resolve_device(device)
    net = build_model(config, _sizes(config), dev).net  # the trainer's: on dev, NHWC if the run was
    net.load_state_dict(state["net"])
    if subhead is None:
        losses = state["stats"]["last_losses"]
        subhead = min(range(len(losses)), key=losses.__getitem__) if losses else 0
    if not 0 <= subhead < config.num_sub_heads:
        raise ValueError(f"subhead must be in [0, {config.num_sub_heads}), got {subhead}")
    dtype = None
    if amp:
        dtype = torch.float16 if dev.type == "cuda" and not torch.cuda.is_bf16_supported() else torch.bfloat16
    return RunModel(net, config, _input_spec(config), subhead, dev, dtype, max_pixels, overlap)
