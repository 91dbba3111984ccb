"""Compact nets for CPU-sized problems (the embedded sets), built from the same pieces as the paper's
bases B and C (``VGGTrunk`` + ``SegmentationHead`` / ``ClusterHead``), only narrower and shallower.

``SmallSegNet`` / ``SmallSegNetTwoHead`` (Textures-3): 5 conv-BN-ReLU 3x3 layers of width 32-64 with
one 2x2 max-pool, "same" padding everywhere, so a 64x64 input gives a 32x32 feature map that the
heads upsample back to 64x64. About 1/60 of SegmentationNet10a's compute per pixel.

``SmallClusterNet`` / ``SmallClusterNetTwoHead`` (Digits, 8x8): 3 conv-BN-ReLU 3x3 layers of width
32-128 with two max-pools, flattened (128 x 2 x 2 at 8x8) into linear heads; about 1/16 of
ClusterNet6c's compute at 8x8.

Unlike the paper's nets (kaiming-normal convs, kept for parity), the segmentation nets keep PyTorch's
default conv initialisation: its ~2.5x smaller head weights start from softer predictions. On
Textures-3 the kaiming-normal version once drifted into a ~0.55-accuracy clustering where runs with
the default initialisation (3 seeds) did not.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .heads import ClusterHead, SegmentationHead
from .nets import Family, SingleHeadNet, TwoHeadNet, _doc
from .trunks import VGGCfg, VGGTrunk

__all__ = ["CFG_SMALL", "CFG_SMALL_CLUSTER", "small_trunk", "small_cluster_trunk", "SmallSegNet",
           "SmallSegNetTwoHead", "SmallClusterNet", "SmallClusterNetTwoHead"]

CFG_SMALL: VGGCfg = [(32, 1), (32, 1), "M", (64, 1), (64, 1), (64, 1)]
CFG_SMALL_CLUSTER: VGGCfg = [(32, 1), "M", (64, 1), "M", (128, 1)]


def small_trunk(in_channels: int, input_sz: int, *, batchnorm_track: bool = True) -> nn.Module:
    """(n, C, s, s) -> (n, 64, s//2, s//2): 3x3 convs with padding 1, one max-pool."""
    return VGGTrunk(CFG_SMALL, in_channels, input_sz, kernel=3, padding=1, flatten=False,
                    batchnorm_track=batchnorm_track)


def small_cluster_trunk(in_channels: int, input_sz: int, *, batchnorm_track: bool = True) -> nn.Module:
    """(n, C, s, s) -> (n, 128 * (s//4)^2): 3x3 convs with padding 1, two max-pools, flattened."""
    return VGGTrunk(CFG_SMALL_CLUSTER, in_channels, input_sz, kernel=3, padding=1, flatten=True,
                    batchnorm_track=batchnorm_track)


FAMILY_SMALL_CLUSTER = Family(small_cluster_trunk, ClusterHead, "fan_in")
FAMILY_SMALL = Family(small_trunk, SegmentationHead, "fan_in", head_options=("border_ring",),
                      fixed_input=False)


def _default_init(net: nn.Module) -> None:
    """PyTorch's default conv initialisation (kaiming-uniform with a = sqrt(5))."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.reset_parameters()


class _DefaultInit:
    """Mixin placed before SingleHeadNet / TwoHeadNet: re-initialises the built net's convs with PyTorch's
    defaults (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _default_init(self)


class SmallSegNet(_DefaultInit, SingleHeadNet):
    __doc__ = _doc("small VGG (5 conv, width 32-64)", "Single-head segmentation net")
    family = FAMILY_SMALL


class SmallSegNetTwoHead(_DefaultInit, TwoHeadNet):
    __doc__ = _doc("small VGG (5 conv, width 32-64)", "Two-head segmentation net (Textures-3)")
    family = FAMILY_SMALL


class SmallClusterNet(SingleHeadNet):
    __doc__ = _doc("small VGG (3 conv, width 32-128)", "Single-head clustering net")
    family = FAMILY_SMALL_CLUSTER


class SmallClusterNetTwoHead(TwoHeadNet):
    __doc__ = _doc("small VGG (3 conv, width 32-128)", "Two-head clustering net (Digits)")
    family = FAMILY_SMALL_CLUSTER
