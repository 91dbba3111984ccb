"""The package's one argument-checking policy (used by ops, losses, accumulate and eval).

A wrong *kind* of argument (not a tensor, not floating, not an int) raises ``TypeError``; a wrong *value*
(shape, range, device, non-finite, zero mass) raises ``ValueError``. Every message names the argument.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch


def check_tensor(x: Any, name: str, *, floating: bool = False, dims: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Returns x when it is a tensor (floating point if ``floating``) whose ``dim()`` is in ``dims`` (any when
    None). TypeError for a non-tensor or a non-floating dtype, ValueError for the number of dimensions."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}")
    if dims is not None and x.dim() not in dims:
        wanted = " or ".join(f"{d}-d" for d in dims)
        raise ValueError(f"{name} must be {wanted}, got shape {tuple(x.shape)}")
    return x


def check_int(value: Any, name: str, *, low: Optional[int] = None, high: Optional[int] = None) -> int:
    """Returns ``int(value)`` for an integer (Python or numpy, not bool) in [low, high]. TypeError for another
    kind, ValueError outside the range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ValueError(f"{name} must be in {bounds}, got {value}")
    return value


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """Returns value when it is one of ``choices``; ValueError otherwise."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_value(ok: bool, message: str) -> None:
    """ValueError(message) unless ok: for value conditions the helpers above do not cover."""
    if not ok:
        raise ValueError(message)

