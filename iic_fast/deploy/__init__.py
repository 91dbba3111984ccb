"""Using trained runs: ``load_run`` -> ``RunModel`` (segment / cluster new images, ``inference``),
``export_run`` (TorchScript / ONNX, ``export``), ``import_original`` (the original IIC release's models,
``original``), and the ``iic-fast segment / cluster / export / import-original`` commands (``commands``).

Names load on first use, so the command line starts without importing the trainer."""
from __future__ import annotations

from typing import Any

_NAMES = {"RunModel": "inference", "load_run": "inference", "build_network": "inference", "save_run": "inference",
          "read_image": "images", "export_run": "export", "import_original": "original"}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_NAMES[name]}", __name__), name)
