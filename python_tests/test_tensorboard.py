"""``iic-fast train --tensorboard``: the metrics.jsonl scalars and the rendered predictions reach TensorBoard;
asking for it without the package is a clear error."""
from __future__ import annotations

import sys

import pytest

from iic_fast.cli import main
from iic_fast.train.tensorboard import metrics_log

pytestmark = pytest.mark.filterwarnings("ignore:iic_fast. no compiled kernels")


def test_metrics_and_predictions_reach_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="needs the optional tensorboard package")
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def render(path, record):  # the trainer passes Evaluator.render: a figure of the record's predictions
        Image.new("RGB", (120, 40 + record["step"]), (255, 0, 0)).save(path)

    log = metrics_log(str(tmp_path), True, render)
    records = [{"kind": "train", "step": 1, "epoch": 0, "lr": 1e-3, "loss_B": -0.5, "loss_no_lamb_B": -0.4},
               {"kind": "train", "step": 2, "epoch": 0, "lr": 5e-4, "loss_A": -1.25},
               {"kind": "eval", "step": 2, "test_acc": 0.75, "nmi": None, "match": "hungarian", "subhead": 0}]
    for record in records:
        log.append(record)
    assert log.read() == records  # metrics.jsonl as without TensorBoard
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0}).Reload()
    scalars = {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}
    assert scalars == {"train/epoch": {1: 0, 2: 0}, "train/lr": {1: pytest.approx(1e-3), 2: pytest.approx(5e-4)},
                       "train/loss_B": {1: -0.5}, "train/loss_no_lamb_B": {1: pytest.approx(-0.4)},
                       "train/loss_A": {2: -1.25}, "eval/test_acc": {2: 0.75}, "eval/subhead": {2: 0}}
    (image,) = events.Images("eval/predictions")
    assert (image.step, image.width, image.height) == (2, 120, 42)


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    tiny = [f"--set={k}={v}" for k, v in dict(n_train=4, n_test=4, input_size=32, batch_size=4).items()]
    assert main(["train", "--tensorboard", "--out", str(tmp_path / "run"), "--no-progress", "--max-steps", "1", *tiny]) == 2
    assert "needs the tensorboard package: pip install 'iic_fast[tensorboard]'" in capsys.readouterr().err
