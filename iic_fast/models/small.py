"""Compact segmentation nets for CPU-sized problems (the embedded Textures-3 set), built from the
same pieces as the paper's base C (``VGGTrunk`` + ``SegmentationHead``), only narrower and shallower.

``SmallSegNet`` / ``SmallSegNetTwoHead``: 5 conv-BN-ReLU 3x3 layers of width 32-64 with one 2x2
max-pool, "same" padding everywhere, so a 64x64 input gives a 32x32 feature map that the heads
upsample back to 64x64. About 1/60 of SegmentationNet10a's compute per pixel.
"""
from __future__ import annotations

from torch import nn

from .heads import SegmentationHead
from .nets import Family, SingleHeadNet, TwoHeadNet, _doc
from .trunks import VGGCfg, VGGTrunk

__all__ = ["CFG_SMALL", "small_trunk", "SmallSegNet", "SmallSegNetTwoHead"]

CFG_SMALL: VGGCfg = [(32, 1), (32, 1), "M", (64, 1), (64, 1), (64, 1)]


def small_trunk(in_channels: int, input_sz: int, *, batchnorm_track: bool = True) -> nn.Module:
    """(n, C, s, s) -> (n, 64, s//2, s//2): 3x3 convs with padding 1, one max-pool."""
    return VGGTrunk(CFG_SMALL, in_channels, input_sz, kernel=3, padding=1, flatten=False,
                    batchnorm_track=batchnorm_track)


FAMILY_SMALL = Family(small_trunk, SegmentationHead, "fan_in", head_options=("border_ring",),
                      fixed_input=False)


class SmallSegNet(SingleHeadNet):
    __doc__ = _doc("small VGG (5 conv, width 32-64)", "Single-head segmentation net")
    family = FAMILY_SMALL


class SmallSegNetTwoHead(TwoHeadNet):
    __doc__ = _doc("small VGG (5 conv, width 32-64)", "Two-head segmentation net (Textures-3)")
    family = FAMILY_SMALL
