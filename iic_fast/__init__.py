"""iic_fast: fast, memory-lean Invariant Information Clustering (IIC; Ji, Henriques, Vedaldi, ICCV 2019).

Building blocks ``joint`` and ``mi``; the losses ``segmentation_loss`` and ``clustering_loss``; drop-ins for the
original code (``IID_loss``, ``IID_segmentation_loss``, ``IID_segmentation_loss_uncollapsed``); and
``JointAccumulator`` for exact large-batch and multi-GPU gradients; ``load_run`` to segment or cluster new images
with a trained run (``iic_fast.deploy``). See DESIGN.md and the README.
"""
from ._extension import build_info, has_kernels
from .losses import (
    IID_loss,
    IID_segmentation_loss,
    IID_segmentation_loss_uncollapsed,
    clustering_loss,
    segmentation_loss,
)
from .accumulate import JointAccumulator
from .ops import joint, mi

__version__ = "0.1.0"


def __getattr__(name: str):
    """``load_run`` loads on first use (it imports the trainer, models and data packages)."""
    if name == "load_run":
        from .deploy.inference import load_run

        return load_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "JointAccumulator", "joint", "mi", "segmentation_loss", "clustering_loss", "IID_loss", "IID_segmentation_loss",
    "IID_segmentation_loss_uncollapsed", "has_kernels", "build_info", "load_run", "__version__",
]
