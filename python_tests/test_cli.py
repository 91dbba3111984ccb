"""``iic-fast`` command line: help texts, a 2-step train into a run directory, eval, errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from iic_fast.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:iic_fast. no compiled kernels")

TINY = ["--set", "n_train=16", "--set", "n_test=4", "--set", "input_size=32", "--batch-size", "4",
        "--set", "candidates=1", "--set", "candidate_jobs=1"]


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"], ["bench", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: iic-fast" in out
    if argv[0] == "train":
        for option in ("--preset", "--data-root", "--out", "--batch-size", "--micro-batch", "--max-steps",
                       "--max-minutes", "--device", "--seed", "--resume", "--set"):
            assert option in out
        assert "potsdam3-iidplus" in out and "textures3" in out


def test_train_then_eval(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--max-steps", "2", "--no-progress", "--seed", "1", *TINY]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["preset"] == "textures3" and summary["steps"] == 2
    assert {"test_acc", "test_acc_best_subhead", "best_acc", "train_seconds"} <= set(summary)
    assert json.loads((run / "summary.json").read_text()) == summary
    for name in ("config.json", "metrics.jsonl", "latest.pt", "best.pt", "plots.png", "predictions.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["seed"] == 1

    assert main(["eval", str(run), "--checkpoint", "latest"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 2 and result["test_acc"] == pytest.approx(summary["test_acc"])

    # resume with a larger budget continues from step 2
    assert main(["train", "--resume", str(run), "--max-steps", "3", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 3


def test_errors_exit_with_status_2(tmp_path, capsys):
    assert main(["train", "--preset", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert main(["train", "--set", "no_such_key=1", "--out", str(tmp_path / "y")]) == 2
    assert main(["train", "--preset", "potsdam3", "--out", str(tmp_path / "z")]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("argv,message", [
    (["train", "--device", "tpu"], "--device 'tpu' is not a device"),
    (["eval", "RUN", "--device", "cuda:99"], "--device cuda:99"),
    (["train", "--set", "lr=fast"], "lr"),
])
def test_user_errors_are_one_line_and_status_2(argv, message, tmp_path, capsys):
    argv = [str(tmp_path) if a == "RUN" else a for a in argv]
    argv += ["--out", str(tmp_path / "r")] if argv[0] == "train" else []
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_an_interrupted_train_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from iic_fast.train import Trainer

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", interrupted)
    assert main(["train", "--out", str(tmp_path / "r"), "--no-progress", *TINY]) == 130
    err = capsys.readouterr().err
    assert f"--resume {tmp_path / 'r'}" in err and err.count("\n") == 1 and "Traceback" not in err


def test_module_entry_point():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # importable without an install
    res = subprocess.run([sys.executable, "-m", "iic_fast.cli", "--help"], capture_output=True, text=True,
                         timeout=120, cwd=root)
    assert res.returncode == 0 and "train" in res.stdout


def test_bench_writes_into_the_current_folder_or_out(tmp_path, monkeypatch):
    results = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "results")
    before = set(os.listdir(results))
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--device", "cpu", "--only", "no-such-shape"]) == 0  # passes --only on
    (written,) = tmp_path.glob("*_loss.json")
    report = json.loads(written.read_text())
    assert report["results"] == [] and report["meta"]["command"].endswith("--only no-such-shape")
    assert main(["bench", "--out", "sub", "--only", "no-such-shape"]) == 0
    assert len(list((tmp_path / "sub").glob("*_loss.json"))) == 1
    assert set(os.listdir(results)) == before  # never into the source tree
