"""Loads the compiled extension iic_fast._C and says which devices have kernels.

Without the extension everything still works through the pure-PyTorch paths of ``iic_fast.reference``.
"""
from __future__ import annotations

import warnings
from typing import Optional, Union

import torch

try:
    from . import _C  # importing runs the TORCH_LIBRARY registrations of torch.ops.iic_fast

    HAS_OPS = True
    LOAD_ERROR: Optional[BaseException] = None
except (ImportError, OSError) as error:  # not built, or built against another torch
    _C = None
    HAS_OPS = False
    LOAD_ERROR = error

# Looked up once at import: a plain dict keeps has_kernels traceable by torch.compile.
_KERNELS = {device: HAS_OPS and torch._C._dispatch_has_kernel_for_dispatch_key("iic_fast::joint", key)
            for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))}
_warned = set()


def has_kernels(device: Union[str, torch.device] = "cpu") -> bool:
    """True when compiled iic_fast kernels exist for ``device`` ("cpu", "cuda", a torch.device)."""
    return _KERNELS.get(torch.device(device).type, False)


def build_info() -> dict:
    """What the extension was compiled with and runs with: {'loaded': True, 'cuda': bool, 'cuda_version': str|None,
    'openmp': bool, 'cpu_isa': 'avx512' | 'avx2' | 'base' (the CPU kernels' instruction set, chosen at run time
    from what the CPU supports; the environment variable IIC_FAST_CPU_ISA caps it)}, or {'loaded': False,
    'error': ...} when the extension could not be loaded."""
    if not HAS_OPS:
        return {"loaded": False, "error": repr(LOAD_ERROR)}
    return {"loaded": True, **_C.build_info()}


def warn_no_kernels(device: Union[str, torch.device]) -> None:
    """Warns once per device type that the pure-PyTorch path is used instead of compiled kernels."""
    device_type = torch.device(device).type
    if device_type in _warned:
        return
    _warned.add(device_type)
    reason = (f"the extension failed to load ({LOAD_ERROR!r}); rebuild with "
              "`pip install --no-build-isolation -e .`" if not HAS_OPS
              else f"it was built without {device_type} kernels")
    warnings.warn(f"iic_fast: no compiled kernels for {device_type}: {reason}. "
                  "Falling back to the pure-PyTorch implementation (same numbers, slower).", stacklevel=3)
