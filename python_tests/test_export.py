"""``export``: TorchScript (always) and ONNX (through onnxruntime, when installed) models equal eager
``RunModel`` predictions, preprocessing and argmax included."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from iic_fast.cli import main
from iic_fast.deploy.export import export_run
from iic_fast.deploy.inference import load_run
from test_inference import make_run

pytestmark = pytest.mark.filterwarnings("ignore:iic_fast. no compiled kernels", "ignore::FutureWarning",
                                        "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {"seg": make_run(root / "seg", num_sub_heads=2, losses=[0.1, -0.5])[0],
            "clu": make_run(root / "clu", "digits", num_sub_heads=2, losses=[-0.3, 0.1])[0]}


def _images(task, seed):
    gen = torch.Generator().manual_seed(seed)
    if task == "seg":  # any size that is a multiple of the net's stride (2), not only the traced 64 x 64
        return [torch.rand(2, 1, 64, 64, generator=gen), torch.rand(1, 1, 48, 90, generator=gen)]
    return [torch.rand(5, 1, 8, 8, generator=gen)]


def _eager(model, x):
    return model.segment(x) if model.task == "segmentation" else model.cluster(x)[0]


@pytest.mark.parametrize("task", ["seg", "clu"])
def test_torchscript_equals_eager(runs, task, tmp_path):
    out = export_run(runs[task], "torchscript", str(tmp_path / "model.pt"))
    exported, model = torch.jit.load(out), load_run(runs[task], device="cpu")
    for x in _images(task, 0):
        assert torch.equal(exported(x), _eager(model, x))


@pytest.mark.parametrize("task", ["seg", "clu"])
def test_onnx_equals_eager(runs, task, tmp_path):
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package (pip install 'iic_fast[onnx]')")
    ort = pytest.importorskip("onnxruntime", reason="the ONNX check runs the model with onnxruntime")
    out = export_run(runs[task], "onnx", str(tmp_path / "model.onnx"))
    session, model = ort.InferenceSession(out), load_run(runs[task], device="cpu")
    for x in _images(task, 1):
        (ids,) = session.run(None, {"images": x.numpy()})
        np.testing.assert_array_equal(ids, _eager(model, x).numpy())


def test_export_command(runs, tmp_path, capsys):
    assert main(["export", runs["seg"], "--out", str(tmp_path / "m.pt")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m.pt")
    assert torch.jit.load(str(tmp_path / "m.pt"))(torch.rand(1, 1, 32, 32)).shape == (1, 32, 32)
    assert main(["export", runs["seg"], "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
