"""Building blocks shared by the IIC networks: conv/BN/ReLU, the residual block, initialisation.

Module attribute names follow the original code (``conv1``, ``bn1``, ``downsample``, ...) so that
``state_dict`` keys line up with checkpoints written by github.com/xu-ji/IIC.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["conv_bn_relu", "BasicBlock", "init_weights", "conv_out_size"]


def conv_out_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Spatial output size of a conv or pool along one axis (floor mode), as PyTorch computes it."""
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_bn_relu(in_ch: int, out_ch: int, *, kernel: int, padding: int, dilation: int = 1,
                 batchnorm_track: bool = True) -> list[nn.Module]:
    """[Conv2d(bias=False), BatchNorm2d, ReLU] as a list, to be spliced into a ``nn.Sequential``.

    A list rather than a ``Sequential`` keeps the original's flat ``features.<i>`` key layout.
    Shapes: (n, in_ch, H, W) -> (n, out_ch, H', W'),
    H' = conv_out_size(H, kernel, 1, padding, dilation).
    """
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size=kernel, stride=1, padding=padding, dilation=dilation,
                  bias=False),
        nn.BatchNorm2d(out_ch, track_running_stats=batchnorm_track),
        nn.ReLU(inplace=True),
    ]


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3(stride)-BN-ReLU-conv3x3-BN, plus identity or 1x1 downsample, ReLU.

    Shapes: (n, in_ch, H, W) -> (n, out_ch, ceil(H / stride), ceil(W / stride)).
    A downsample (1x1 conv with stride, then BN) is added when stride != 1 or in_ch != out_ch.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, *, batchnorm_track: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch, track_running_stats=batchnorm_track)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, track_running_stats=batchnorm_track)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch, track_running_stats=batchnorm_track),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, in_ch, H, W) -> (n, out_ch, H', W')."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place, as the original: BN's backward does not need its output
        return self.relu(out)


def init_weights(module: nn.Module, conv_mode: str) -> None:
    """The original initialisation, applied to every submodule.

    conv: kaiming_normal_(mode=conv_mode, relu) (``"fan_out"`` for the ResNet, ``"fan_in"`` for the
    VGG nets), bias 0; BatchNorm: weight 1, bias 0; Linear: weight N(0, 0.01^2), bias 0.
    """
    if conv_mode not in ("fan_in", "fan_out"):
        raise ValueError(f"conv_mode must be 'fan_in' or 'fan_out', got {conv_mode!r}")
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=conv_mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
