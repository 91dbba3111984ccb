"""Device, process group, precision and network of a run."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from .config import TrainConfig
from .data import RunData, build_net

Autocast = Callable[[], contextlib.AbstractContextManager]


def resolve_device(name: str) -> torch.device:
    """"auto" -> this rank's CUDA device (LOCAL_RANK under torchrun) when there is one, else the CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_distributed(device: torch.device) -> Tuple[int, int]:
    """(rank, world size); initialises the process group from torchrun's environment when
    WORLD_SIZE > 1 (NCCL on CUDA, gloo on the CPU)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def amp_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The network's autocast dtype: "auto" is bf16 on CUDA GPUs that support it and off elsewhere
    (CPU autocast is slower than fp32 for these convs); "off", "bf16", "fp16" as named."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def reduce_over_ranks(value: float, op: "dist.ReduceOp", device: torch.device) -> float:
    """``value`` reduced by ``op`` (e.g. ``dist.ReduceOp.MIN``) over the ranks of the process group;
    ``value`` itself on one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor(float(value), device=device)
    dist.all_reduce(t, op=op)
    return float(t)


def autocast_factory(dtype: Optional[torch.dtype], device: torch.device) -> Autocast:
    """A zero-argument factory of the autocast context for the network's forward passes (the IIC
    loss always runs in fp32: the heads return fp32 probabilities)."""
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def use_channels_last(net: nn.Module) -> nn.Module:
    """Moves ``net`` to NHWC (channels_last) and converts its 4-d input to match on every call (other
    inputs pass through to the net's own shape check); returns it.

    Same numbers to float rounding. NHWC is the layout tensor cores want under AMP; on the CPU its gain is
    measured by benchmarks/bench_layout.py (the README's layout table)."""

    def to_nhwc(module: nn.Module, args: Tuple[Any, ...]) -> Tuple[Any, ...]:
        x, *rest = args
        return (x.contiguous(memory_format=torch.channels_last), *rest) if x.dim() == 4 else args

    net.to(memory_format=torch.channels_last)
    net.register_forward_pre_hook(to_nhwc)
    return net


@dataclass
class Model:
    """A run's network on its device and in its layout, with the precision of its forward passes."""

    net: nn.Module
    amp_dtype: Optional[torch.dtype]  # None: float32
    autocast: Autocast  # context factory for the network's forward passes


def build_model(config: TrainConfig, data: RunData, device: torch.device,
                net: Optional[nn.Module] = None) -> Model:
    """The network of ``config`` (or the prebuilt ``net``) sized for ``data``, moved to ``device``, in
    NHWC when ``config.channels_last``, with the autocast of ``config.amp``: what training and
    re-evaluation share."""
    net = (net if net is not None else build_net(config, data)).to(device)
    if config.channels_last:
        use_channels_last(net)
    dtype = amp_dtype(config.amp, device)
    return Model(net, dtype, autocast_factory(dtype, device))
