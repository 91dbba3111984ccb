"""IIC output heads: ``num_sub_heads`` independent sub-heads, each returning softmax probabilities.

Probabilities are computed in at least float32 (``softmax(..., dtype=float32)`` for half/bf16
logits), so under autocast the network runs in low precision while the IIC loss receives fp32
inputs. With ``return_logits`` the heads return the raw logits instead (in the compute dtype).

Each sub-head is ``heads[i] = Sequential(layer)`` so that parameter keys are ``heads.<i>.0.weight``,
the original's keys (there the Sequential also held the Softmax, which has no parameters).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SubHeads", "ClusterHead", "SegmentationHead"]


def _probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1 in at least float32 (float64 stays float64)."""
    return F.softmax(logits, dim=1, dtype=torch.promote_types(logits.dtype, torch.float32))


class SubHeads(nn.Module):
    """Base class: ``num_sub_heads`` independent copies of one layer; subclasses add the activation.

    ``forward`` returns a list with one tensor per sub-head (length ``num_sub_heads``).
    """

    def __init__(self, layers: Sequence[nn.Module], output_k: int, return_logits: bool = False):
        super().__init__()
        if len(layers) < 1:
            raise ValueError("num_sub_heads must be >= 1")
        if output_k < 1:
            raise ValueError(f"output_k must be >= 1, got {output_k}")
        self.heads = nn.ModuleList(nn.Sequential(layer) for layer in layers)
        self.output_k = output_k
        self.return_logits = return_logits

    @property
    def num_sub_heads(self) -> int:
        """Number of independent sub-heads (length of the output list)."""
        return len(self.heads)

    def _finish(self, logits: torch.Tensor, out_size: Optional[Sequence[int]],
                return_logits: bool) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, out_size: Optional[Sequence[int]] = None,
                return_logits: Optional[bool] = None) -> list[torch.Tensor]:
        """Trunk features -> list of ``num_sub_heads`` outputs (shapes in the subclass docstrings).

        ``return_logits`` (None: the constructor's setting) returns logits instead of probabilities.
        """
        as_logits = self.return_logits if return_logits is None else return_logits
        return [self._finish(head(x), out_size, as_logits) for head in self.heads]


class ClusterHead(SubHeads):
    """Clustering head: per sub-head ``Linear(in_features, output_k)`` + softmax over clusters.

    Shapes: features (n, in_features) -> list of num_sub_heads tensors (n, output_k).
    """

    def __init__(self, in_features: int, output_k: int, num_sub_heads: int = 1, *,
                 return_logits: bool = False):
        super().__init__([nn.Linear(in_features, output_k) for _ in range(num_sub_heads)],
                         output_k, return_logits)

    def _finish(self, logits: torch.Tensor, out_size: Optional[Sequence[int]],
                return_logits: bool) -> torch.Tensor:
        return logits if return_logits else _probabilities(logits)


class SegmentationHead(SubHeads):
    """Segmentation head: per sub-head 1x1 ``Conv2d(in_channels, output_k, bias=False)``, softmax over
    channels, then bilinear upsampling (``align_corners=False``) to ``out_size`` (the input size).

    Shapes: features (n, in_channels, h, w) -> list of num_sub_heads tensors (n, output_k, H, W).

    ``border_ring=True`` reproduces the original exactly: its 1x1 conv has padding 1 and no bias, so
    the map grows to (h+2, w+2) with a ring of exactly-zero logits (uniform 1/K probabilities) before
    upsampling. Off by default: the map stays h x w and every output pixel is informative; the
    trainer's paper presets turn it on (config field ``border_ring``).

    With ``return_logits`` the logits are upsampled instead; note softmax(upsample(logits)) differs
    slightly from the default upsample(softmax(logits)), which is the original's order.
    """

    def __init__(self, in_channels: int, output_k: int, num_sub_heads: int = 1, *,
                 border_ring: bool = False, return_logits: bool = False):
        pad = 1 if border_ring else 0
        super().__init__([nn.Conv2d(in_channels, output_k, 1, padding=pad, bias=False)
                          for _ in range(num_sub_heads)], output_k, return_logits)
        self.border_ring = border_ring

    def _finish(self, logits: torch.Tensor, out_size: Optional[Sequence[int]],
                return_logits: bool) -> torch.Tensor:
        out = logits if return_logits else _probabilities(logits)
        if out_size is None:
            return out
        return F.interpolate(out, size=tuple(out_size), mode="bilinear", align_corners=False)
