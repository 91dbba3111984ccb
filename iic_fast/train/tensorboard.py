"""TensorBoard logging (``iic-fast train --tensorboard``, config field ``tensorboard``).

``metrics_log`` gives the trainer its ``metrics.jsonl`` writer; with ``tensorboard`` on, every record
also goes to TensorBoard under ``RUN_DIR/tensorboard``: each numeric field as a scalar ``<kind>/<field>``
(``train/loss_B``, ``eval/test_acc``, ...) at the record's step, and at each evaluation the rendered
predictions (the image of ``predictions.png``) as ``eval/predictions``. Needs the optional
``tensorboard`` package (``pip install 'iic_fast[tensorboard]'``).
"""
from __future__ import annotations

import math
import os
import tempfile
from typing import Any, Callable, Dict, Optional

import numpy as np

from .report import MetricsLog

Render = Callable[[str, Dict[str, Any]], None]


def _summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("tensorboard logging (--tensorboard) needs the tensorboard package: "
                         "pip install 'iic_fast[tensorboard]'") from None
    return SummaryWriter


class TensorBoardLog(MetricsLog):
    """A ``MetricsLog`` that also writes its records to TensorBoard (see the module docstring); the
    writer opens at the first record, so processes that never log (ranks > 0) write nothing."""

    def __init__(self, path: str, folder: str, render: Render) -> None:
        super().__init__(path)
        self._writer_class = _summary_writer()
        self.folder, self.render = folder, render
        self._writer: Optional[Any] = None
        self._purge_step: Optional[int] = None

    def _open(self) -> Any:
        if self._writer is None:
            self._writer = self._writer_class(log_dir=self.folder, purge_step=self._purge_step)
        return self._writer

    def append(self, record: Dict[str, Any]) -> None:
        super().append(record)
        writer, kind, step = self._open(), record.get("kind", "record"), int(record.get("step", 0))
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                writer.add_scalar(f"{kind}/{key}", value, step)
        if kind == "eval":
            writer.add_image("eval/predictions", self._predictions(record), step, dataformats="HWC")
        writer.flush()

    def _predictions(self, record: Dict[str, Any]) -> np.ndarray:
        """The predictions figure of ``record`` as uint8 (H, W, 3)."""
        from PIL import Image

        fd, path = tempfile.mkstemp(suffix=".png")
        os.close(fd)
        try:
            self.render(path, record)
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        finally:
            os.unlink(path)

    def truncate(self, step: int) -> None:
        """Also drops TensorBoard events after ``step`` (a resumed run rewrites them)."""
        super().truncate(step)
        self._purge_step = step + 1


def metrics_log(out: str, tensorboard: bool, render: Render) -> MetricsLog:
    """The run's ``out/metrics.jsonl`` log, also writing to TensorBoard (``out/tensorboard``) when
    ``tensorboard``; ValueError when it is asked for and the package is not installed."""
    path = os.path.join(out, "metrics.jsonl")
    return TensorBoardLog(path, os.path.join(out, "tensorboard"), render) if tensorboard else MetricsLog(path)
