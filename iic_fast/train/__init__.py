"""IIC training: configuration and presets, the trainer, checkpoints and run reports.

>>> from iic_fast.train import Trainer, preset
>>> summary = Trainer(preset("textures3", max_steps=100), out="runs/demo").fit()   # doctest: +SKIP

The command line (``iic-fast train``) wraps exactly this; see ``iic_fast.train.config`` for the
meaning of every field and ``iic_fast.train.presets`` for the paper's runs and the embedded sets'.
"""
from .checkpoint import load as load_checkpoint
from .checkpoint import save_atomic
from .config import TrainConfig, apply_overrides
from .presets import PRESETS, preset, preset_table
from .evaluation import Evaluator
from .steps import NonFiniteLossError
from .evaluation import evaluate_run
from .runtime import resolve_device
from .trainer import Trainer

__all__ = ["PRESETS", "TrainConfig", "Trainer", "Evaluator", "NonFiniteLossError", "apply_overrides", "evaluate_run",
           "load_checkpoint", "preset", "preset_table", "resolve_device", "save_atomic"]
