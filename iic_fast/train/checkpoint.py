"""Atomic checkpoints and RNG-state capture, so a killed run resumes exactly where it was.

A checkpoint is written to a temporary file in the same folder, flushed and fsync'ed, then renamed
over the target with ``os.replace`` (atomic on POSIX and Windows): a crash mid-write leaves the
previous checkpoint intact, never a truncated one.
"""
from __future__ import annotations

import os
import random
import tempfile
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

PathLike = Union[str, "os.PathLike[str]"]
FORMAT = 1


def save_atomic(obj: Any, path: PathLike) -> None:
    """``torch.save(obj)`` to ``path`` via a temp file + fsync + ``os.replace``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: PathLike, map_location: Union[str, torch.device, None] = "cpu") -> Dict[str, Any]:
    """Loads a checkpoint written by the trainer; ValueError for anything else."""
    ckpt = torch.load(os.fspath(path), map_location=map_location, weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not an iic_fast trainer checkpoint (format {FORMAT})")
    return ckpt


def rng_state(generator: Optional[torch.Generator] = None) -> Dict[str, Any]:
    """States of Python's, NumPy's and torch's global RNGs (CPU and every CUDA device) and of
    ``generator`` (the pair maker's)."""
    state: Dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: Dict[str, Any], generator: Optional[torch.Generator] = None) -> None:
    """Inverse of ``rng_state``."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
