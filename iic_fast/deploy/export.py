"""``export_run``: a trained run as one self-contained model for deployment (TorchScript or ONNX).

The exported model takes float images (n, C, H, W) in [0, 1] with the run's raw channels (1 grey or 3
RGB, ...), applies the run's preprocessing (Sobel, ...) and network, and returns the argmax of the
selected main-head sub-head: int64 (n, H, W) cluster ids for segmentation runs (H and W multiples of
the network's stride, ``RunModel.stride``; any size otherwise), (n,) for clustering runs (which take
images already resized to the run's evaluation crop side, ``export_input_side``).
"""
from __future__ import annotations

import os
import warnings
from typing import Optional

import torch
from torch import nn

from .inference import RunModel, load_run

__all__ = ["FORMATS", "Deployable", "export_input_side", "export_run"]

FORMATS = ("torchscript", "onnx")
_SUFFIX = {"torchscript": ".torchscript.pt", "onnx": ".onnx"}


class Deployable(nn.Module):
    """A ``RunModel``'s preprocessing, network and argmax as one module: (n, C, H, W) -> ids."""

    def __init__(self, model: RunModel) -> None:
        super().__init__()
        self.model = model
        self.net = model.net  # registered, so the weights are part of the export

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W) float in [0, 1] -> int64 (n, H, W) (segmentation) or (n,) (clustering)."""
        return self.model.head(self.model.preprocess(images)).argmax(1)


def export_input_side(model: RunModel) -> int:
    """Side of the example image traced: 64 rounded to the net's stride (segmentation), else the side
    the run's evaluation transform crops from (clustering exports take only that size)."""
    if model.task == "segmentation":
        return max(64 // model.stride, 1) * model.stride
    crop = model.pairs.crop1
    return crop if isinstance(crop, int) else list(crop)[0]


def export_run(run_dir: str, fmt: str = "torchscript", out: Optional[str] = None, *,
               checkpoint: str = "best") -> str:
    """Exports ``run_dir``'s network with its preprocessing and argmax (see the module docstring) to
    ``out`` (default ``RUN_DIR/model.torchscript.pt`` or ``RUN_DIR/model.onnx``); returns the path.

    Raises:
        ValueError: an unknown format, or ONNX without the ``onnx`` package installed.
        FileNotFoundError: no such run directory or checkpoint.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401  (torch.onnx.export needs it)
        except ImportError:
            raise ValueError("--format onnx needs the onnx package: pip install 'iic_fast[onnx]'") from None
    model = load_run(run_dir, checkpoint, device="cpu")
    module = Deployable(model).eval()
    side = export_input_side(model)
    example = torch.rand(1, model.spec.raw_channels, side, side, generator=torch.Generator().manual_seed(0))
    out = out or os.path.join(run_dir, "model" + _SUFFIX[fmt])
    if os.path.isdir(out):
        raise ValueError(f"--out {out} is a folder; give a file name")
    with warnings.catch_warnings():
        # the tracer flags the shape checks (channels, sizes) it turns into constants: intended here
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        if fmt == "torchscript":
            with torch.no_grad():
                torch.jit.trace(module, example, check_trace=False).save(out)
        else:
            dims = {0: "n", 2: "height", 3: "width"} if model.task == "segmentation" else {0: "n"}
            torch.onnx.export(module, (example,), out, input_names=["images"], output_names=["clusters"],
                              dynamic_axes={"images": dims}, dynamo=False)
    return out
