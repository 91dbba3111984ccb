"""The paper's six networks, assembled from a trunk (base A, B or C) and one or two heads.

Every ``forward`` returns a **list** of ``num_sub_heads`` tensors, one per sub-head, for single-head
and two-head models alike:

- clustering nets (ClusterNet5g*, ClusterNet6c*): input (n, in_channels, input_sz, input_sz) ->
  list of (n, k) probabilities (rows sum to 1);
- segmentation nets (SegmentationNet10a*): input (n, in_channels, H, W) with H, W even ->
  list of (n, k, H, W) per-pixel probabilities (sum to 1 over dim 1), upsampled to the input size.

Two-head models take ``forward(x, head="B")``: head "B" is the main head (k = output_k_B = k_gt,
the one evaluated), head "A" the auxiliary overclustering head (k = output_k_A > k_gt). The trunk
runs on every call, as in the original (which calls the net once per head).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import torch
from torch import nn

from .blocks import init_weights
from .heads import ClusterHead, SegmentationHead, SubHeads
from .trunks import base_a, base_b, base_c

__all__ = ["IICNet", "SingleHeadNet", "TwoHeadNet", "ClusterNet5g", "ClusterNet5gTwoHead",
           "ClusterNet6c", "ClusterNet6cTwoHead", "SegmentationNet10a",
           "SegmentationNet10aTwoHead"]


@dataclass(frozen=True)
class Family:
    """What distinguishes the bases: trunk builder, head type, conv init mode, head-only options."""

    trunk: Callable[..., nn.Module]
    head: type[SubHeads]
    conv_init: str
    head_options: tuple[str, ...] = ()
    fixed_input: bool = True  # flattening trunks need exactly input_sz x input_sz inputs


FAMILY_A = Family(base_a, ClusterHead, "fan_out")
FAMILY_B = Family(base_b, ClusterHead, "fan_in")
FAMILY_C = Family(base_c, SegmentationHead, "fan_in", head_options=("border_ring",),
                  fixed_input=False)


class IICNet(nn.Module):
    """Shared machinery: a trunk plus heads stored under the original's attribute names
    (``head`` for single-head, ``head_A`` / ``head_B`` for two-head models, so ``state_dict`` keys
    match the original's), the original initialisation and input validation.
    """

    family: ClassVar[Family]

    def __init__(self, *, in_channels: int, input_sz: int, output_ks: dict[str, int],
                 sub_heads: dict[str, int], batchnorm_track: bool, return_logits: bool,
                 head_options: dict[str, Any]):
        super().__init__()
        fam = self.family
        unknown = sorted(set(head_options) - set(fam.head_options))
        if unknown:
            raise ValueError(f"{type(self).__name__} does not take option(s) {unknown}; "
                             f"head options it accepts: {list(fam.head_options)}")
        self.in_channels, self.input_sz, self.batchnorm_track = in_channels, input_sz, batchnorm_track
        self.trunk = fam.trunk(in_channels, input_sz, batchnorm_track=batchnorm_track)
        for attr, k in output_ks.items():
            setattr(self, attr, fam.head(self.trunk.out_shape[0], k, sub_heads[attr],
                                         return_logits=return_logits, **head_options))
        init_weights(self, fam.conv_init)

    @property
    def num_sub_heads(self) -> int:
        """Sub-heads of the main head (length of its output list; head A may have another count)."""
        return self._heads()[-1].num_sub_heads

    def _heads(self) -> list[SubHeads]:
        return [m for m in self.children() if isinstance(m, SubHeads)]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk output: (n, C, s, s) -> (n, F) for clustering nets, (n, 512, h, w) for segmentation."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (n, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if self.family.fixed_input and tuple(x.shape[-2:]) != (self.input_sz, self.input_sz):
            raise ValueError(f"{type(self).__name__} was built for {self.input_sz}x{self.input_sz} "
                             f"inputs, got {tuple(x.shape[-2:])}")
        return self.trunk(x)

    def _run(self, x: torch.Tensor, head: SubHeads, return_logits: Optional[bool]) -> list[torch.Tensor]:
        return head(self.features(x), out_size=x.shape[-2:], return_logits=return_logits)


class SingleHeadNet(IICNet):
    """Trunk + one head (``output_k`` clusters, ``num_sub_heads`` sub-heads); used for IID+."""

    def __init__(self, *, in_channels: int, input_sz: int, output_k: int, num_sub_heads: int = 1,
                 batchnorm_track: bool = True, return_logits: bool = False, **head_options: Any):
        super().__init__(in_channels=in_channels, input_sz=input_sz, output_ks={"head": output_k},
                         sub_heads={"head": num_sub_heads}, batchnorm_track=batchnorm_track,
                         return_logits=return_logits, head_options=head_options)

    def forward(self, x: torch.Tensor, return_logits: Optional[bool] = None) -> list[torch.Tensor]:
        """(n, in_channels, H, W) -> list of ``num_sub_heads`` outputs: (n, k) or (n, k, H, W).

        ``return_logits`` overrides the constructor flag for this call.
        """
        return self._run(x, self.head, return_logits)


class TwoHeadNet(IICNet):
    """Shared trunk + head A (auxiliary overclustering, ``output_k_A``) and head B (main,
    ``output_k_B`` = k_gt), each with ``num_sub_heads`` sub-heads (head A: ``num_sub_heads_A`` when
    given; the main head's sub-heads are the ones selected from, so head A may need fewer)."""

    def __init__(self, *, in_channels: int, input_sz: int, output_k_A: int, output_k_B: int,
                 num_sub_heads: int = 1, num_sub_heads_A: Optional[int] = None, batchnorm_track: bool = True,
                 return_logits: bool = False, **head_options: Any):
        super().__init__(in_channels=in_channels, input_sz=input_sz,
                         output_ks={"head_A": output_k_A, "head_B": output_k_B},
                         sub_heads={"head_A": num_sub_heads if num_sub_heads_A is None else num_sub_heads_A,
                                    "head_B": num_sub_heads}, batchnorm_track=batchnorm_track,
                         return_logits=return_logits, head_options=head_options)

    def forward(self, x: torch.Tensor, head: str = "B",
                return_logits: Optional[bool] = None) -> list[torch.Tensor]:
        """(n, in_channels, H, W) -> list of the sub-heads' outputs of head ``"A"`` or ``"B"``:
        (n, k_head) for clustering, (n, k_head, H, W) for segmentation."""
        if head == "A":
            return self._run(x, self.head_A, return_logits)
        if head == "B":
            return self._run(x, self.head_B, return_logits)
        raise ValueError(f"head must be 'A' or 'B', got {head!r}")


_CLU = "(n, in_channels, input_sz, input_sz) -> list of num_sub_heads (n, k) probabilities"
_SEG = "(n, in_channels, H, W), H and W even -> list of num_sub_heads (n, k, H, W) probabilities"


def _doc(base: str, role: str, shapes: str | None = None) -> str:
    """Class docstring from the base, the role and (optionally) the input -> output shapes."""
    return f"{role} on base {base}." + (f"\n\nShapes: {shapes}." if shapes else "")


class ClusterNet5g(SingleHeadNet):
    __doc__ = _doc("A (ResNet34-like)", "Single-head clustering net", _CLU)
    family = FAMILY_A


class ClusterNet5gTwoHead(TwoHeadNet):
    __doc__ = _doc("A (ResNet34-like)", "Two-head clustering net (STL10, CIFAR)", _CLU)
    family = FAMILY_A


class ClusterNet6c(SingleHeadNet):
    __doc__ = _doc("B (4 conv 5x5 VGG-like)", "Single-head clustering net", _CLU)
    family = FAMILY_B


class ClusterNet6cTwoHead(TwoHeadNet):
    __doc__ = _doc("B (4 conv 5x5 VGG-like)", "Two-head clustering net (MNIST)", _CLU)
    family = FAMILY_B


class SegmentationNet10a(SingleHeadNet):
    __doc__ = _doc("C (6 conv VGG-like, dilated)", "Single-head segmentation net (border_ring option)",
                   _SEG)
    family = FAMILY_C


class SegmentationNet10aTwoHead(TwoHeadNet):
    __doc__ = _doc("C (6 conv VGG-like, dilated)",
                   "Two-head segmentation net (COCO-Stuff, Potsdam; border_ring option)", _SEG)
    family = FAMILY_C
