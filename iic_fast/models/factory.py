"""``build(name, ...)``: construct one of the paper's networks by its original class name."""
from __future__ import annotations

from typing import Any, Optional

from .nets import (ClusterNet5g, ClusterNet5gTwoHead, ClusterNet6c, ClusterNet6cTwoHead, IICNet,
                   SegmentationNet10a, SegmentationNet10aTwoHead, TwoHeadNet)
from .small import SmallClusterNet, SmallClusterNetTwoHead, SmallSegNet, SmallSegNetTwoHead

__all__ = ["MODELS", "build"]

MODELS: dict[str, type[IICNet]] = {cls.__name__: cls for cls in (
    ClusterNet5g, ClusterNet5gTwoHead, ClusterNet6c, ClusterNet6cTwoHead,
    SegmentationNet10a, SegmentationNet10aTwoHead, SmallSegNet, SmallSegNetTwoHead,
    SmallClusterNet, SmallClusterNetTwoHead)}

_COMMON_OPTIONS = ("batchnorm_track", "return_logits")


def build(name: str, *, in_channels: Optional[int] = None, input_sz: Optional[int] = None,
          num_sub_heads: int = 1, num_sub_heads_A: Optional[int] = None, output_k_A: Optional[int] = None,
          output_k_B: Optional[int] = None, output_k: Optional[int] = None,
          **options: Any) -> IICNet:
    """Build the network ``name`` (the original ``--arch`` names, listed in ``MODELS``).

    Args:
        name: ClusterNet5g, ClusterNet5gTwoHead, ClusterNet6c, ClusterNet6cTwoHead,
            SegmentationNet10a or SegmentationNet10aTwoHead (the paper's), or the CPU-sized
            SmallSegNet(TwoHead) and SmallClusterNet(TwoHead).
        in_channels: input channels (1 grey, 2 Sobel, 4 RGBIR, 5 RGB+Sobel, ...). Required.
        input_sz: input side length (square; clustering nets size their linear heads from it).
            Required.
        num_sub_heads: independent sub-heads per head (length of every output list).
        num_sub_heads_A: two-head models only: head A's sub-heads, when not ``num_sub_heads``.
        output_k_A, output_k_B: clusters of head A (auxiliary overclustering) and head B (main);
            required for two-head models, rejected for single-head ones.
        output_k: clusters of the single head; required for single-head models only.
        **options: ``batchnorm_track`` (BatchNorm ``track_running_stats``, default True),
            ``return_logits`` (default False) and, for segmentation nets, ``border_ring``
            (default False; True reproduces the original head's zero-logit ring, as every paper
            preset of ``iic_fast.train`` does).

    Returns:
        The model; ``model(x)`` (and ``model(x, head="A"|"B")`` for two-head models) returns a list
        of ``num_sub_heads`` (head A: ``num_sub_heads_A``) tensors of shape (n, k) or, for
        segmentation, (n, k, H, W).

    Raises:
        ValueError: unknown name (the message lists the choices), a missing or misplaced argument
            (the message names it), or an option the model does not take.
    """
    cls = MODELS.get(name)
    if cls is None:
        raise ValueError(f"unknown model {name!r}; choices: {', '.join(MODELS)}")
    for arg, val in (("in_channels", in_channels), ("input_sz", input_sz)):
        if val is None:
            raise ValueError(f"build({name!r}) needs the argument {arg}")
    ks = {"output_k_A": output_k_A, "output_k_B": output_k_B, "output_k": output_k}
    wanted = ("output_k_A", "output_k_B") if issubclass(cls, TwoHeadNet) else ("output_k",)
    for arg in wanted:
        if ks[arg] is None:
            raise ValueError(f"{name} needs the argument {arg}")
    extra = [arg for arg, val in ks.items() if val is not None and arg not in wanted]
    if extra:
        raise ValueError(f"{name} takes {' and '.join(wanted)}, not {', '.join(extra)}")
    allowed = _COMMON_OPTIONS + cls.family.head_options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{name} does not take option(s) {unknown}; options: {list(allowed)}")
    kwargs = {arg: ks[arg] for arg in wanted}
    if num_sub_heads_A is not None:
        if "output_k_A" not in wanted:
            raise ValueError(f"{name} has one head: num_sub_heads_A is for two-head models")
        kwargs["num_sub_heads_A"] = num_sub_heads_A
    return cls(in_channels=in_channels, input_sz=input_sz, num_sub_heads=num_sub_heads,
               **kwargs, **options)
