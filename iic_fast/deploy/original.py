"""``import_original``: a trained model of the original IIC release (github.com/xu-ji/IIC: a model folder
with ``config.pickle`` and ``best_net.pytorch``) as an iic_fast run directory that ``load_run``,
``iic-fast segment`` / ``cluster`` / ``eval`` / ``export`` use.

- ``config.pickle`` is a Python 2 pickle (protocol 2) of an ``argparse.Namespace``. It is read with a
  restricted unpickler that builds only namespaces, plain Python values and NumPy scalars / arrays
  (Python 2 ``str`` decoded as latin-1); anything else is refused, so a pickle cannot run code.
- ``best_net.pytorch`` (``best.pytorch`` for segmentation runs, a dict whose ``net`` entry holds the
  weights) is a state_dict saved by torch 0.4, read with ``torch.load(weights_only=True)``; the
  ``module.`` prefix of DataParallel is dropped. Our networks use the original's parameter names, so the
  weights load as they are (torch 0.4.0 files without BatchNorm's ``num_batches_tracked`` get zeros).
- The run's config is our preset for the same dataset and protocol (paper presets: the original's head
  ring ``border_ring``, COCO-Stuff's BGR channel order), with the model and preprocessing fields of the
  original config: arch, output_k_A / output_k_B (output_k), gt_k, num_sub_heads, batchnorm_track,
  input_sz, Sobel and include_rgb, and the clustering evaluation crop (rand_crop_sz or tf1_crop_sz).
  The checkpoint records no sub-head losses, so sub-head 0 is used unless ``subhead`` says otherwise.
  The 2018 segmentation runs behind the paper named ``num_sub_heads`` ``num_heads``; both are read.
"""
from __future__ import annotations

import argparse
import copyreg
import os
import pickle
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from ..models import MODELS
from ..models.nets import TwoHeadNet
from ..train.config import TrainConfig
from ..train.presets import preset
from .inference import _input_spec, build_network, save_run

__all__ = ["read_original_config", "read_original_weights", "config_from_original", "import_original"]

WEIGHT_FILES = ("best_net.pytorch", "best.pytorch")
# the original's --dataset (Potsdam: +coarse labels) -> our preset
_PRESETS = {"Coco164kCuratedFew": "cocostuff3", "Coco164kCuratedFull": "cocostuff15", "STL10": "stl10",
            "CIFAR10": "cifar10", "CIFAR20": "cifar100-20", "MNIST": "mnist"}


def _numpy_reconstructors() -> Dict[Tuple[str, str], Any]:
    multiarray = getattr(np, "_core", np.core).multiarray  # numpy 2 moved numpy.core to numpy._core
    allowed = {("numpy", "dtype"): np.dtype, ("numpy", "ndarray"): np.ndarray}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "scalar")] = multiarray.scalar
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
    return allowed


class _ConfigUnpickler(pickle.Unpickler):
    """Builds only argparse namespaces, Python 2 / 3 builtins of plain data and NumPy values."""

    ALLOWED: Dict[Tuple[str, str], Any] = {
        ("argparse", "Namespace"): argparse.Namespace, ("collections", "OrderedDict"): OrderedDict,
        ("copy_reg", "_reconstructor"): copyreg._reconstructor, ("copyreg", "_reconstructor"): copyreg._reconstructor,
        ("__builtin__", "object"): object, ("builtins", "object"): object, **_numpy_reconstructors(),
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which import-original does not load") from None


def read_original_config(path: str) -> argparse.Namespace:
    """The original's ``config.pickle`` as a Namespace; ValueError naming the file when it is not one."""
    try:
        with open(path, "rb") as f:
            config = _ConfigUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"{path} is not an original IIC config.pickle: {error}") from None
    if not isinstance(config, argparse.Namespace):
        raise ValueError(f"{path} holds a {type(config).__name__}, not the original's argparse Namespace")
    return config


def read_original_weights(path: str) -> Dict[str, torch.Tensor]:
    """The original's saved weights (a state_dict, or a dict with it under ``net``), ``module.`` dropped."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds (UnpicklingError, RuntimeError, ...)
        raise ValueError(f"cannot read the weights {path}: {error}") from None
    if isinstance(state, dict) and isinstance(state.get("net"), dict):
        state = state["net"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a state_dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _field(config: argparse.Namespace, name: str, *old_names: str) -> Any:
    """``config.name`` (or the first of ``old_names`` present); ValueError naming it when absent."""
    for n in (name, *old_names):
        if hasattr(config, n):
            return getattr(config, n)
    raise ValueError(f"the original config has no field {name!r}")


def _preset_name(config: argparse.Namespace, two_head: bool) -> str:
    dataset = _field(config, "dataset")
    if dataset == "Potsdam":
        if not getattr(config, "using_IR", True):
            raise ValueError("Potsdam models without the IR channel (using_IR False) are not supported")
        name = "potsdam3" if getattr(config, "use_coarse_labels", False) else "potsdam6"
    elif dataset in _PRESETS:
        name = _PRESETS[dataset]
    else:
        raise ValueError(f"the original dataset {dataset!r} has no iic_fast preset; known: Potsdam, "
                         f"{', '.join(_PRESETS)}")
    return name if two_head else name + "-iidplus"


def config_from_original(config: argparse.Namespace) -> TrainConfig:
    """Our run config for an original config (see the module docstring); ValueError naming a field the
    import cannot honour."""
    arch = _field(config, "arch")
    if arch not in MODELS:
        raise ValueError(f"unknown original arch {arch!r}; known: {', '.join(MODELS)}")
    two_head = issubclass(MODELS[arch], TwoHeadNet)
    ks = ({"output_k_A": _field(config, "output_k_A"), "output_k_B": _field(config, "output_k_B")} if two_head
          else {"output_k_A": None, "output_k_B": _field(config, "output_k")})
    name = _preset_name(config, two_head)
    base = preset(name)
    fields = dict(arch=arch, gt_k=_field(config, "gt_k"), num_sub_heads=_field(config, "num_sub_heads", "num_heads"),
                  batchnorm_track=bool(getattr(config, "batchnorm_track", False)),
                  mode={"IID": "iid", "IID+": "iid+"}.get(getattr(config, "mode", "IID"), base.mode), **ks)
    in_channels = _field(config, "in_channels")
    if base.task == "segmentation":
        fields.update(input_size=_field(config, "input_sz"), d=getattr(config, "half_T_side_dense", base.d))
        pairs = {"sobel": not getattr(config, "no_sobel", False), "include_rgb": bool(getattr(config, "include_rgb", False))}
    else:
        crop = getattr(config, "rand_crop_sz", None) or _field(config, "tf1_crop_sz")
        pairs = {"input_size": _field(config, "input_sz"), "crop1": crop,
                 "sobel": in_channels != 1, "include_rgb": in_channels == 5}  # grey (MNIST) / Sobel / RGB + Sobel
    ours = TrainConfig.from_dict({**base.to_dict(), **fields, "pairs": {**base.pairs, **pairs}})
    if _input_spec(ours).in_channels != in_channels:
        raise ValueError(f"the original config's in_channels {in_channels} do not match its preprocessing "
                         f"as iic_fast reads it ({_input_spec(ours).in_channels} channels for preset {name})")
    return ours


def import_original(model_dir: str, out: str, *, weights: Optional[str] = None) -> str:
    """Reads ``model_dir/config.pickle`` and the weights (``weights``, else the first of
    ``WEIGHT_FILES`` present) and writes the run directory ``out``; returns the checkpoint's path.

    Raises:
        FileNotFoundError: a missing file (named). ValueError: a file that is not what it should be, or
        weights that do not fit the configured network (missing / unexpected / mis-shaped names listed).
    """
    config_path = os.path.join(model_dir, "config.pickle")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{config_path} not found (MODEL_DIR must hold the original's config.pickle)")
    if weights is None:
        found = [os.path.join(model_dir, w) for w in WEIGHT_FILES if os.path.isfile(os.path.join(model_dir, w))]
        if not found:
            raise FileNotFoundError(f"no {' or '.join(WEIGHT_FILES)} in {model_dir}")
        weights = found[0]
    config = config_from_original(read_original_config(config_path))
    state = read_original_weights(weights)
    net = build_network(config)
    expected = net.state_dict()
    for key in expected:  # torch 0.4.0 files predate BatchNorm's counter
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(expected[key])
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    shapes = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"{weights} does not fit {config.arch} as configured: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, other shapes {shapes[:5]}")
    return save_run(out, config, {k: state[k].to(expected[k].dtype) for k in expected})
