"""The IIC paper's networks (Ji et al. 2019, sup. mat. table 1) as composable modules.

- Trunks: base A ``ResNetTrunk`` (ClusterNet5g), base B and C ``VGGTrunk`` (ClusterNet6c,
  SegmentationNet10a), ``in_channels`` configurable.
- Heads: ``ClusterHead`` (Linear + softmax), ``SegmentationHead`` (1x1 conv + softmax + bilinear
  upsampling to the input size), each with ``num_sub_heads`` independent sub-heads.
- Nets: single-head and two-head variants; **every forward returns a list** of ``num_sub_heads``
  outputs, (n, k) for clustering and (n, k, H, W) for segmentation; two-head nets take
  ``forward(x, head="B")`` (B main, A auxiliary overclustering).

Probabilities come out in at least float32 even under autocast, so the IIC loss runs in fp32;
``return_logits=True`` (constructor or forward keyword) returns logits instead.
``state_dict`` keys follow the original code, so its checkpoints load with ``load_state_dict``.

>>> from iic_fast.models import build
>>> net = build("SegmentationNet10aTwoHead", in_channels=4, input_sz=200, output_k_A=24, output_k_B=3)
"""
from .blocks import BasicBlock, init_weights
from .factory import MODELS, build
from .heads import ClusterHead, SegmentationHead, SubHeads
from .nets import (ClusterNet5g, ClusterNet5gTwoHead, ClusterNet6c, ClusterNet6cTwoHead, IICNet,
                   SegmentationNet10a, SegmentationNet10aTwoHead, SingleHeadNet, TwoHeadNet)
from .trunks import CFG_B, CFG_C, ResNetTrunk, VGGTrunk, base_a, base_b, base_c

__all__ = [
    "build", "MODELS",
    "ClusterNet5g", "ClusterNet5gTwoHead", "ClusterNet6c", "ClusterNet6cTwoHead",
    "SegmentationNet10a", "SegmentationNet10aTwoHead", "IICNet", "SingleHeadNet", "TwoHeadNet",
    "ResNetTrunk", "VGGTrunk", "base_a", "base_b", "base_c", "CFG_B", "CFG_C",
    "SubHeads", "ClusterHead", "SegmentationHead", "BasicBlock", "init_weights",
]
