"""The three IIC trunks (supplementary table 1): base A (ResNet34-like), B and C (VGG-like).

Every trunk knows the shape of its output for its configured ``input_sz`` (``out_shape``), computed
with the conv arithmetic, so heads can be sized without a dummy forward pass.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from .blocks import BasicBlock, conv_bn_relu, conv_out_size

__all__ = ["ResNetTrunk", "VGGTrunk", "CFG_B", "CFG_C", "base_a", "base_b", "base_c"]

# VGG layer configs: (out_channels, dilation) for a conv-BN-ReLU, "M" for a 2x2/2 max-pool.
VGGCfg = Sequence[Union[tuple[int, int], str]]
CFG_B: VGGCfg = [(64, 1), "M", (128, 1), "M", (256, 1), "M", (512, 1)]  # ClusterNet6c, 5x5 convs
CFG_C: VGGCfg = [(64, 1), (128, 1), "M", (256, 1), (256, 1), (512, 2), (512, 2)]  # SegNet10a, 3x3


class ResNetTrunk(nn.Module):
    """Base A, the ClusterNet5g trunk: a ResNet34 with a stride-1 3x3 stem.

    conv3x3(in_channels -> 64) - BN - ReLU - MaxPool(2, 2, padding=1), then layers of
    ``blocks`` BasicBlocks with 64, 128, 256, 512 channels (strides 1, 2, 2, 2), then an AvgPool of
    the whole final map (the original's kernel 7/5/3 for inputs 96/64/32) and a flatten.

    Shapes: (n, in_channels, input_sz, input_sz) -> (n, 512); with ``penultimate=True`` the
    output of layer3 flattened, (n, 256 * s * s).
    """

    def __init__(self, in_channels: int, input_sz: int, *, blocks: Sequence[int] = (3, 4, 6, 3),
                 batchnorm_track: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, track_running_stats=batchnorm_track)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2, padding=1)
        widths, strides = (64, 128, 256, 512), (1, 2, 2, 2)
        sz = conv_out_size(input_sz, 2, 2, padding=1)  # after the max-pool
        in_ch = 64
        for i, (w, s, nb) in enumerate(zip(widths, strides, blocks), start=1):
            layer = [BasicBlock(in_ch, w, s, batchnorm_track=batchnorm_track)]
            layer += [BasicBlock(w, w, batchnorm_track=batchnorm_track) for _ in range(nb - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*layer))
            sz, in_ch = conv_out_size(sz, 3, s, padding=1), w
        if sz < 1:
            raise ValueError(f"input_sz {input_sz} is too small for the ResNet trunk")
        self.avgpool = nn.AvgPool2d(sz, stride=1)  # pools the whole sz x sz map to 1 x 1
        self.final_size = sz
        self.out_shape: tuple[int, ...] = (512,)

    def forward(self, x: torch.Tensor, penultimate: bool = False) -> torch.Tensor:
        """(n, C, H, W) -> (n, 512) (or layer3 features flattened when ``penultimate``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        if not penultimate:
            x = self.avgpool(self.layer4(x))
        return torch.flatten(x, 1)  # flatten, not view: works for channels_last too


class VGGTrunk(nn.Module):
    """Bases B and C: a VGG-style stack of conv-BN-ReLU and 2x2 max-pools from a config list.

    Every conv uses the same ``kernel`` and ``padding`` regardless of dilation (as the original), so a
    dilation-2 3x3 conv with padding 1 shrinks the map by 2 pixels.

    Shapes: (n, in_channels, H, W) -> (n, C_out, H', W'), or (n, C_out * H' * W') when ``flatten``.
    ``out_shape`` is (C_out, H', W') for ``input_sz`` (or (C_out*H'*W',) when flattened).
    """

    def __init__(self, cfg: VGGCfg, in_channels: int, input_sz: int, *, kernel: int, padding: int,
                 flatten: bool, batchnorm_track: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        ch, sz = in_channels, input_sz
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                sz = conv_out_size(sz, 2, 2)
            else:
                out, dil = item  # type: ignore[misc]
                layers += conv_bn_relu(ch, out, kernel=kernel, padding=padding, dilation=dil,
                                       batchnorm_track=batchnorm_track)
                ch, sz = out, conv_out_size(sz, kernel, 1, padding, dil)
            if sz < 1:
                raise ValueError(f"input_sz {input_sz} is too small for this VGG trunk")
        self.features = nn.Sequential(*layers)
        self.flatten = flatten
        self.final_size = sz
        self.out_shape: tuple[int, ...] = (ch * sz * sz,) if flatten else (ch, sz, sz)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W) -> (n, C_out, H', W') or flattened (n, C_out*H'*W')."""
        x = self.features(x)
        return torch.flatten(x, 1) if self.flatten else x


def base_a(in_channels: int, input_sz: int, *, batchnorm_track: bool = True) -> ResNetTrunk:
    """Base A (ClusterNet5g): (n, in_channels, s, s) -> (n, 512)."""
    return ResNetTrunk(in_channels, input_sz, batchnorm_track=batchnorm_track)


def base_b(in_channels: int, input_sz: int, *, batchnorm_track: bool = True) -> VGGTrunk:
    """Base B (ClusterNet6c): 4 convs 5x5 pad 2 + 3 max-pools; (n, C, s, s) -> (n, 512*(s//8)^2)."""
    return VGGTrunk(CFG_B, in_channels, input_sz, kernel=5, padding=2, flatten=True,
                    batchnorm_track=batchnorm_track)


def base_c(in_channels: int, input_sz: int, *, batchnorm_track: bool = True) -> VGGTrunk:
    """Base C (SegmentationNet10a): 6 convs 3x3 pad 1 (last two dilation 2) + 1 max-pool.

    (n, C, s, s) -> (n, 512, s//2 - 4, s//2 - 4), e.g. 60x60 at 128 and 96x96 at 200.
    """
    if input_sz % 2:
        raise ValueError(f"SegmentationNet10a needs an even input_sz, got {input_sz}")
    return VGGTrunk(CFG_C, in_channels, input_sz, kernel=3, padding=1, flatten=False,
                    batchnorm_track=batchnorm_track)
