"""Trainer: loss goes down, exact resume, atomic checkpoints, NaN guard, exact micro-batching, presets."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from iic_fast.data import registry
from iic_fast.train import (PRESETS, NonFiniteLossError, Trainer, apply_overrides, load_checkpoint, preset,
                            save_atomic)
from iic_fast.train import checkpoint as ck
from iic_fast.train import schedule
from iic_fast.train.evaluation import Evaluator, evaluate_run
from iic_fast.train.state import Position, Schedule, TrainState
from iic_fast.train.steps import worse_half

pytestmark = pytest.mark.filterwarnings("ignore:iic_fast. no compiled kernels")

TINY_SEG = dict(n_train=16, n_test=4, input_size=32, batch_size=4, candidates=1, candidate_jobs=1, progress=False,
                log_every=1)
# lamb_B 1.0: with the digits preset's 1.2, near-uniform outputs of a fresh net sit on a plateau of the
# entropy-weighted loss that a dozen steps do not leave. One-step passes and 2 warm-up epochs, so that a
# 6-step run crosses the head-A warm-up into B_then_A (A, A, B, B, A, B). selection_passes 0: one final record,
# picked by the training-window loss (the evaluation-mode pick has its own test); one start (candidates have theirs)
TINY_CLU = dict(batch_size=40, repeats=5, num_sub_heads=2, lamb_B=1.0, epoch_steps=1, head_A_warmup_epochs=2,
                selection_passes=0, candidates=1, candidate_jobs=1, progress=False, log_every=1)


def seg_config(**kw):
    return preset("textures3", **{**TINY_SEG, **kw})


def clu_config(**kw):
    return preset("digits", **{**TINY_CLU, **kw})


def _time_free(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "eval_seconds")} for r in records]


def _kill_after(trainer, steps):
    """Makes ``trainer`` die (KeyboardInterrupt) when it is about to take the step after ``steps``."""
    step = trainer.train_step

    def dies(head):
        if trainer.step == steps:
            raise KeyboardInterrupt("killed")
        return step(head)

    trainer.train_step = dies
    return trainer


def _read(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("make", [seg_config, clu_config], ids=["segmentation", "clustering"])
def test_a_few_steps_reduce_the_loss(tmp_path, make):
    trainer = Trainer(make(lr=1e-3), str(tmp_path))
    losses = [sum(l for l, _ in trainer.train_step("B")) for _ in range(12)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.02, losses


def test_fit_writes_run_dir_and_summary(tmp_path):
    summary = Trainer(seg_config(max_steps=4, eval_every=2), str(tmp_path)).fit()
    for name in ("config.json", "metrics.jsonl", "latest.pt", "best.pt", "plots.png", "predictions.png",
                 "summary.json"):
        assert (tmp_path / name).is_file(), name
    assert summary["steps"] == 4 and 0.0 <= summary["test_acc"] <= 1.0
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    evals = [r for r in _read(tmp_path / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    assert summary["test_acc"] == evals[-1]["test_acc"]


@pytest.mark.parametrize("make", [seg_config, clu_config], ids=["segmentation", "clustering"])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, make):
    full, part = tmp_path / "full", tmp_path / "part"
    Trainer(make(max_steps=6, eval_every=3), str(full)).fit()
    killed = _kill_after(Trainer(make(max_steps=6, eval_every=3), str(part)), 4)  # past the checkpoint at 3
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    Trainer(make(max_steps=6, eval_every=3), str(part), resume=True).fit()
    assert _time_free(_read(part / "metrics.jsonl")) == _time_free(_read(full / "metrics.jsonl"))
    a, b = load_checkpoint(full / "latest.pt")["net"], load_checkpoint(part / "latest.pt")["net"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_subhead_restarts_reset_the_worse_half_before_the_checkpoint(tmp_path):
    """At the first evaluation past 40 % of the schedule (step 3 of 6) the worse half of the main head's
    sub-heads goes back to its initial weights; the checkpoint holds the restarted net, so a run killed
    after it resumes into the uninterrupted run."""
    assert worse_half([3.0, 1.0, 2.0, 0.5]) == [0, 2] and worse_half([1.0, 2.0, 3.0]) == [1, 2]
    assert worse_half([1.0, 0.0]) == [0] and worse_half([1.0]) == []
    make = lambda: clu_config(num_sub_heads=4, subhead_restarts=[0.4], max_steps=6, eval_every=3)  # noqa: E731
    initial = Trainer(make(), str(tmp_path / "init")).net.head_B.state_dict()
    Trainer(make(), str(tmp_path / "full")).fit()
    evals = [r for r in _read(tmp_path / "full" / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [3, 6] and "restarted_subheads" not in evals[1]
    restarted = evals[0]["restarted_subheads"]
    assert restarted == worse_half(evals[0]["subhead_losses"]) and len(restarted) == 2
    killed = _kill_after(Trainer(make(), str(tmp_path / "part")), 4)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    at_3 = load_checkpoint(tmp_path / "part" / "latest.pt")
    assert at_3["stats"]["restarts"] == 1
    for i in range(4):
        same = [torch.equal(at_3["net"][f"head_B.{k}"], v) for k, v in initial.items() if k.startswith(f"heads.{i}.")]
        assert all(same) == (i in restarted), i
    Trainer(make(), str(tmp_path / "part"), resume=True).fit()
    assert _time_free(_read(tmp_path / "part" / "metrics.jsonl")) == _time_free(_read(tmp_path / "full" / "metrics.jsonl"))
    a, b = load_checkpoint(tmp_path / "full" / "latest.pt")["net"], load_checkpoint(tmp_path / "part" / "latest.pt")["net"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="subhead_restarts"):
        clu_config(subhead_restarts=[1.0])
    with pytest.raises(ValueError, match="subhead_restarts"):
        clu_config(subhead_restarts=[0.0])


def test_atomic_checkpoint_survives_a_crash_mid_write(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    save_atomic({"format": ck.FORMAT, "value": torch.arange(5)}, path)

    def crashing_save(obj, f):
        f.write(b"partial bytes of a checkpoint")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(ck.torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"format": ck.FORMAT, "value": torch.zeros(5)}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["value"], torch.arange(5))
    assert os.listdir(tmp_path) == ["latest.pt"]  # no temp file left behind


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(seg_config(max_steps=6, eval_every=2), str(tmp_path))
    make_pairs = trainer.data.pairs

    class Poisoned:
        def __getattr__(self, name):
            return getattr(make_pairs, name)

        def __call__(self, img, mask, gen):
            img1, img2, affine, m = make_pairs(img, mask, gen)
            return img1 * float("nan") if trainer.step >= 3 else img1, img2, affine, m

    trainer.data.pairs = Poisoned()
    with pytest.raises(NonFiniteLossError):
        trainer.fit()
    assert trainer.step == 3
    assert load_checkpoint(tmp_path / "latest.pt")["position"]["step"] == 2
    assert not (tmp_path / "summary.json").exists()


class TinyNet(nn.Module):
    """BatchNorm-free two-head net (BN statistics are per micro-batch, so only BN-free nets get
    bit-comparable gradients); same call convention as iic_fast.models."""

    def __init__(self, cin: int, ka: int, kb: int, clustering: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 8, 3, padding=1)
        self.clustering = clustering
        self.head_A, self.head_B = nn.Conv2d(8, ka, 1), nn.Conv2d(8, kb, 1)

    def forward(self, x, head="B"):
        y = (self.head_A if head == "A" else self.head_B)(torch.relu(self.conv(x)))
        return [F.softmax(y.mean((2, 3)) if self.clustering else y, dim=1)]


@pytest.mark.parametrize("make", [seg_config, clu_config], ids=["segmentation", "clustering"])
def test_micro_batch_gives_the_full_batch_gradient(tmp_path, make):
    grads, losses = [], []
    for micro in (0, 3):
        config = make(micro_batch=micro, num_sub_heads=1)
        torch.manual_seed(0)
        net = TinyNet(registry.get(config.dataset).in_channels(config), config.output_k_A, config.output_k_B,
                      config.task == "clustering")
        trainer = Trainer(config, str(tmp_path / str(micro)), net=net)
        losses.append(trainer.train_step("B"))
        grads.append([p.grad.clone() for p in net.parameters() if p.grad is not None])
    torch.testing.assert_close(torch.tensor(losses[0]), torch.tensor(losses[1]), rtol=1e-5, atol=1e-7)
    assert len(grads[0]) == len(grads[1]) > 0
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g0, g1, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("make", [seg_config, clu_config], ids=["segmentation", "clustering"])
def test_channels_last_gives_the_same_step(tmp_path, make):
    grads, losses = [], []
    for nhwc in (False, True):
        trainer = Trainer(make(channels_last=nhwc, seed=3), str(tmp_path / str(nhwc)))
        conv = next(m for m in trainer.net.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == nhwc
        losses.append(trainer.train_step("B"))
        grads.append([p.grad.contiguous() for p in trainer.net.parameters() if p.grad is not None])
    torch.testing.assert_close(torch.tensor(losses[0]), torch.tensor(losses[1]), rtol=1e-5, atol=1e-6)
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g0, g1, rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="expected input"):  # the net's own check, not a layout error
        trainer.net(torch.zeros(2, 8, 8))


def test_head_A_warmup_trains_head_A_alone_first(tmp_path):
    c = clu_config(head_A_warmup_epochs=2, epoch_steps=1, max_steps=5, eval_every=5)
    Trainer(c, str(tmp_path)).fit()
    trained = [sorted(k[5:] for k in r if k.startswith("loss_") and "no_lamb" not in k)
               for r in _read(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    assert trained == [["A"], ["A"], ["B"], ["B"], ["A"]]  # 2 warm-up epochs, then B_then_A (B, B, A)
    with pytest.raises(ValueError, match="head_A_warmup_epochs must be >= 0"):
        preset("digits", head_A_warmup_epochs=-1)
    with pytest.raises(ValueError, match="head_A_warmup_epochs needs a two-head net"):
        preset("stl10-iidplus", head_A_warmup_epochs=1)


def test_num_sub_heads_A_sizes_head_A_only(tmp_path):
    """Head A trains its own number of sub-heads; head B, the selection and a re-load of the run keep
    num_sub_heads."""
    trainer = Trainer(clu_config(num_sub_heads=3, num_sub_heads_A=1, max_steps=2, eval_every=2), str(tmp_path))
    assert len(trainer.train_step("A")) == 1 and len(trainer.train_step("B")) == 3
    summary = trainer.fit()
    record = [r for r in _read(tmp_path / "metrics.jsonl") if r["kind"] == "eval"][-1]
    assert len(record["subhead_losses"]) == 3
    assert evaluate_run(str(tmp_path), "latest")["test_acc"] == summary["test_acc"]
    with pytest.raises(ValueError, match="num_sub_heads_A"):
        preset("digits", num_sub_heads_A=0)
    with pytest.raises(ValueError, match="num_sub_heads_A"):
        preset("stl10-iidplus", num_sub_heads_A=1)


class OppositeSubheads(nn.Module):
    """Two main-head sub-heads that rank oppositely. Sub-head 0 is confident and agrees across the two views
    of every training pair (one-hot of the position in the batch: IIC loss -log k, the lowest possible) but
    knows nothing of the labels; sub-head 1 is uniform in training (loss 0) and at evaluation predicts the
    true label (that of the nearest memorised test input), so it has the best accuracy."""

    def __init__(self, k: int, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__()
        self.k, self.inputs, self.labels = k, inputs.flatten(1), labels
        self.w = nn.Parameter(torch.zeros(()))  # something for the optimiser; outputs do not depend on it

    def forward(self, x, head="B"):
        n, k = x.shape[0], self.k
        by_position = F.one_hot(torch.arange(n) % k, k).float()
        if self.training:
            by_label = torch.zeros(n, k)
        else:
            by_label = F.one_hot(self.labels[torch.cdist(x.flatten(1), self.inputs).argmin(1)], k).float()
        return [F.softmax(20 * z + 0 * self.w, dim=1) for z in (by_position, by_label)]


def test_test_acc_is_the_lowest_loss_subheads_not_the_best_accuracy(tmp_path):
    config = clu_config(head_A_warmup_epochs=0, head_schedule="B_then_A", output_k_A=10, max_steps=2,
                        eval_every=2, subhead_restarts=[])  # the stub has no sub-heads to restart
    with pytest.raises(ValueError, match="subhead_restarts needs a net"):
        Trainer(clu_config(subhead_restarts=[0.5]), str(tmp_path / "no_heads"), net=nn.Linear(1, 1))
    trainer = Trainer(config, str(tmp_path))
    images, labels = trainer.data.test.tensors
    net = OppositeSubheads(config.output_k_B, trainer.data.pairs.eval_transform(images), labels)
    summary = Trainer(config, str(tmp_path / "stub"), net=net).fit()
    (record,) = [r for r in _read(tmp_path / "stub" / "metrics.jsonl") if r["kind"] == "eval"]
    losses, accs = record["subhead_losses"], record["subhead_accs"]
    assert losses[0] < losses[1] and accs[1] == 1.0 > accs[0]  # the stub's rankings do differ
    assert record["subhead"] == 0 and record["test_acc"] == summary["test_acc"] == accs[0]
    assert record["test_acc_best_subhead"] == 1.0


class ModeSwapped(nn.Module):
    """Two main-head sub-heads whose loss ranking flips with the mode: in training mode sub-head 0 is
    confident and agrees across the views of every pair (one-hot of the position in the batch: the lowest
    IIC loss) and sub-head 1 uniform (loss 0); in evaluation mode the other way round."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x, head="B"):
        n, k = x.shape[0], self.k
        sharp = F.softmax(20 * F.one_hot(torch.arange(n) % k, k).float() + 0 * self.w, dim=1)
        flat = torch.full((n, k), 1.0 / k) + 0 * self.w
        return [sharp, flat] if self.training else [flat, sharp]


@pytest.mark.parametrize("passes", [0, 2])
def test_selection_passes_pick_the_final_subhead_by_the_evaluation_mode_loss(tmp_path, passes):
    """With selection_passes the final evaluation (a second record when the last step was already evaluated)
    reports the sub-head of lowest evaluation-mode loss on fixed pairs (the same at every call), keeps the
    training-window losses in the record and saves its losses for summary, load_run and evaluate_run;
    earlier evaluations, and every evaluation without it, pick by the training-window loss."""
    config = clu_config(head_A_warmup_epochs=0, output_k_A=10, max_steps=2, eval_every=2, subhead_restarts=[],
                        selection_passes=passes)
    trainer = Trainer(config, str(tmp_path), net=ModeSwapped(config.output_k_B))
    summary = trainer.fit()
    records = [r for r in _read(tmp_path / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["subhead"] for r in records] == ([0, 1] if passes else [0])
    assert [r["test_acc_selection"] for r in records] == (["lowest_loss", "lowest_eval_mode_loss"] if passes
                                                          else ["lowest_loss"])
    last = records[-1]
    assert summary["test_acc_selection"] == last["test_acc_selection"]
    state = load_checkpoint(str(tmp_path / "latest.pt"))
    assert state["stats"]["last_losses"] == last["subhead_losses"]
    if passes:
        train = last["subhead_train_losses"]
        assert train[0] < train[1] and last["subhead_losses"][1] < last["subhead_losses"][0]
        assert trainer.evaluator.selection_losses(passes) == trainer.evaluator.selection_losses(passes)
        assert state["stats"]["selection"] == "lowest_eval_mode_loss"
    with pytest.raises(ValueError, match="selection_passes must be >= 0"):
        preset("digits", selection_passes=-1)


def _candidates_config(**kw):
    return clu_config(**{"num_sub_heads": 4, "subhead_restarts": [0.6], "max_steps": 8, "eval_every": 2, **kw})


def test_candidates_under_torchrun_name_the_one_start_settings(tmp_path, monkeypatch):
    """The presets with two starts (textures3, digits) under torchrun: a ValueError saying how to train one."""
    monkeypatch.setattr("iic_fast.train.trainer.init_distributed", lambda device: (0, 2))
    with pytest.raises(ValueError, match="--set candidates=1 --set candidate_jobs=1"):
        Trainer(seg_config(candidates=2, candidate_jobs=2), str(tmp_path / "run"))


def test_candidates_continue_the_lowest_loss_start_exactly(tmp_path, monkeypatch):
    """candidates 2: each trains to the first evaluation at or past candidate_steps (step 4), the one of lowest
    evaluation-mode loss (here candidate 1) goes on; the result is the plain run of that candidate, record for
    record and weight for weight, its sub-head restart (step 6) back to the candidate's own initial weights. A run
    killed in the second candidate resumes into the same result."""
    calls = []

    def scored(self, passes):  # candidate 0 scores 0.0, candidate 1 -1.0
        calls.append(passes)
        return [-float(len(calls) % 2 == 0)] * self.config.num_sub_heads

    monkeypatch.setattr(Evaluator, "selection_losses", scored)
    summary = Trainer(_candidates_config(candidates=2, candidate_steps=3), str(tmp_path / "run")).fit()
    assert (summary["candidate"], summary["candidate_losses"], calls) == (1, [0.0, -1.0], [1, 1])
    starts = [load_checkpoint(tmp_path / "run" / "candidates" / str(i) / "latest.pt") for i in (0, 1)]
    assert [c["position"]["step"] for c in starts] == [4, 4]
    assert not torch.equal(*(c["net"]["trunk.features.0.weight"] for c in starts))  # starts of their own
    Trainer(_candidates_config(), str(tmp_path / "plain"), candidate=1).fit()
    records = _time_free(_read(tmp_path / "run" / "metrics.jsonl"))
    assert records == _time_free(_read(tmp_path / "plain" / "metrics.jsonl"))
    assert [r["step"] for r in records if r.get("restarted_subheads")] == [6]
    a, b = load_checkpoint(tmp_path / "run" / "latest.pt"), load_checkpoint(tmp_path / "plain" / "latest.pt")
    assert all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])
    assert summary["train_seconds"] > a["stats"]["seconds"] - 1e-6 > 0

    calls.clear()
    killed = Trainer(_candidates_config(candidates=2, candidate_steps=3), str(tmp_path / "part"))
    make = killed._make_candidate

    def dies_in_candidate_1(config, out, resume, index):
        trainer = make(config, out, resume, index)
        return _kill_after(trainer, 3) if index == 1 else trainer

    killed._make_candidate = dies_in_candidate_1
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert not (tmp_path / "part" / "latest.pt").exists()
    done = tmp_path / "part" / "candidates" / "0" / "latest.pt"
    written = done.stat().st_mtime_ns
    calls.clear()
    resumed = Trainer(_candidates_config(candidates=2, candidate_steps=3), str(tmp_path / "part"), resume=True).fit()
    assert done.stat().st_mtime_ns == written  # the finished candidate is not trained again
    Trainer(_candidates_config(candidates=2, candidate_steps=3), str(tmp_path / "part")).fit()
    assert done.stat().st_mtime_ns != written  # a fresh run in the same directory starts its candidates afresh
    assert resumed["candidate"] == 1 and _time_free(_read(tmp_path / "part" / "metrics.jsonl")) == records
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        clu_config(candidates=0)


def test_whole_run_candidates_the_lowest_loss_run_is_the_result(tmp_path, monkeypatch):
    """candidate_steps 0: every candidate is a whole run (its final evaluation at step 8 included) in its share of
    max_minutes, and the run's result is the one of lowest evaluation-mode loss (candidate 1), record for record
    and weight for weight that candidate's plain run, with no evaluation added. A run killed in candidate 1
    resumes into the same result without touching the finished candidate 0."""
    calls = []

    def scored(self, passes):  # candidate 0 scores 0.0, candidate 1 -1.0
        calls.append(passes)
        return [-float(len(calls) % 2 == 0)] * self.config.num_sub_heads

    monkeypatch.setattr(Evaluator, "selection_losses", scored)
    config = _candidates_config(candidates=2, candidate_steps=0, max_minutes=3.0, eval_every=3)  # last at 6
    summary = Trainer(config, str(tmp_path / "run")).fit()
    assert (summary["candidate"], summary["candidate_losses"], summary["steps"]) == (1, [0.0, -1.0], 8)
    for i in (0, 1):
        run = tmp_path / "run" / "candidates" / str(i)
        assert json.loads((run / "config.json").read_text())["max_minutes"] == 1.5
        assert load_checkpoint(run / "latest.pt")["stats"]["final_step"] == 8
    Trainer(_candidates_config(eval_every=3), str(tmp_path / "plain"), candidate=1).fit()
    records = _time_free(_read(tmp_path / "run" / "metrics.jsonl"))
    assert records == _time_free(_read(tmp_path / "plain" / "metrics.jsonl"))
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6, 8]
    a, b = load_checkpoint(tmp_path / "run" / "latest.pt"), load_checkpoint(tmp_path / "plain" / "latest.pt")
    assert all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])

    calls.clear()
    killed = Trainer(config, str(tmp_path / "part"))
    make = killed._make_candidate
    killed._make_candidate = lambda c, out, resume, i: (_kill_after(make(c, out, resume, i), 3) if i == 1
                                                       else make(c, out, resume, i))
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    done = tmp_path / "part" / "candidates" / "0" / "latest.pt"
    written = done.stat().st_mtime_ns
    calls.clear()
    resumed = Trainer(config, str(tmp_path / "part"), resume=True).fit()
    assert done.stat().st_mtime_ns == written and resumed["candidate"] == 1
    assert _time_free(_read(tmp_path / "part" / "metrics.jsonl")) == records

    calls.clear()  # with selection_passes, a candidate's final evaluation scores it: once per candidate
    passes = Trainer(_candidates_config(candidates=2, candidate_steps=0, selection_passes=2), str(tmp_path / "p")).fit()
    assert calls == [2, 2] and passes["candidate"] == 1


def test_candidates_in_processes_are_the_candidates_of_one_thread(tmp_path):
    """candidate_jobs 2: the two whole-run candidates train at once, each in a process of its own with half the
    threads (here 1) and the whole budget; the choice, every candidate's loss, the records and the weights are
    those of the same candidates trained one after the other with 1 thread."""
    threads = torch.get_num_threads()
    config = _candidates_config(candidates=2, candidate_steps=0, max_minutes=3.0, eval_every=3, selection_passes=1)
    try:
        torch.set_num_threads(1)
        alone = Trainer(config, str(tmp_path / "alone")).fit()
        torch.set_num_threads(2)
        jobs = Trainer(apply_overrides(config, ["candidate_jobs=2"]), str(tmp_path / "jobs")).fit()
    finally:
        torch.set_num_threads(threads)
    assert (jobs["candidate"], jobs["candidate_losses"]) == (alone["candidate"], alone["candidate_losses"])
    assert len(set(alone["candidate_losses"])) == 2
    for i in (0, 1):
        assert json.loads((tmp_path / "jobs" / "candidates" / str(i) / "config.json").read_text())["max_minutes"] == 3.0
    records = [_time_free(_read(tmp_path / name / "metrics.jsonl")) for name in ("alone", "jobs")]
    assert records[0] == records[1]
    a, b = load_checkpoint(tmp_path / "alone" / "latest.pt"), load_checkpoint(tmp_path / "jobs" / "latest.pt")
    assert all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])
    for bad in ("candidate_jobs=0", "candidate_jobs=3"):
        with pytest.raises(ValueError, match="candidate_jobs must be >= 1 and divide candidates"):
            apply_overrides(config, [bad])


_FIT = """import json, sys, torch
from iic_fast.train import Trainer
from iic_fast.train.config import TrainConfig
torch.set_num_threads(2)  # one thread per candidate process
config = TrainConfig.from_dict(json.load(open(sys.argv[1])))
Trainer(config, sys.argv[2], resume=sys.argv[3] == "resume").fit()
"""


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_a_killed_run_with_candidate_processes_resumes_exactly(tmp_path):
    """SIGKILL of the run's process while its two candidate processes train: the candidates die with it (nothing
    goes on writing), and --resume ends in the uninterrupted run's records and weights."""
    config = _candidates_config(candidates=2, candidate_steps=0, candidate_jobs=2, max_steps=80, eval_every=10,
                                selection_passes=1)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # importable without an install
    fit = lambda out, mode="fresh": subprocess.Popen(  # noqa: E731
        [sys.executable, "-c", _FIT, str(tmp_path / "config.json"), str(tmp_path / out), mode], cwd=root)
    assert fit("whole").wait(timeout=300) == 0
    killed = fit("part")
    started = tmp_path / "part" / "candidates" / "1" / "latest.pt"
    deadline = time.time() + 120
    while not started.exists() and time.time() < deadline and killed.poll() is None:
        time.sleep(0.02)
    assert started.exists() and killed.poll() is None, "the run ended before candidate 1 wrote a checkpoint"
    workers = _children(killed.pid)
    killed.kill()
    killed.wait()
    deadline = time.time() + 30
    while any(os.path.exists(f"/proc/{w}") for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{w}") for w in workers), "a candidate process outlived its run"
    assert not (tmp_path / "part" / "latest.pt").exists()
    assert fit("part", "resume").wait(timeout=300) == 0
    records = [_time_free(_read(tmp_path / name / "metrics.jsonl")) for name in ("whole", "part")]
    assert records[0] == records[1]
    a, b = load_checkpoint(tmp_path / "whole" / "latest.pt"), load_checkpoint(tmp_path / "part" / "latest.pt")
    assert a["stats"]["candidate_losses"] == b["stats"]["candidate_losses"]
    assert all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])


def test_a_kill_between_the_two_checkpoint_writes_resumes_into_the_same_best(tmp_path, monkeypatch):
    """An evaluation that improves writes best.pt and latest.pt; a run killed between the two writes resumes into
    the uninterrupted run's best.pt (with latest.pt written first, the resumed run believed in a best.pt that was
    never written, and kept none or a stale one)."""
    config = clu_config(max_steps=12, eval_every=2)  # the test accuracy improves again at step 12
    Trainer(config, str(tmp_path / "whole")).fit()
    real, steps = ck.save_atomic, []

    def dies_between(state, path):
        steps.append(state["position"]["step"])
        if steps.count(steps[-1]) == 2 and steps[-1] > steps[0]:  # the second write of an evaluation after the first
            raise KeyboardInterrupt("killed between the two writes")
        real(state, path)

    monkeypatch.setattr(ck, "save_atomic", dies_between)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, str(tmp_path / "part")).fit()
    monkeypatch.setattr(ck, "save_atomic", real)
    Trainer(config, str(tmp_path / "part"), resume=True).fit()
    a, b = (load_checkpoint(tmp_path / name / "best.pt") for name in ("whole", "part"))
    assert a["position"]["step"] == b["position"]["step"] > 2
    assert all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])


def test_presets_and_overrides():
    for name in PRESETS:
        c = preset(name)
        assert c.preset == name and (c.head_schedule == "single") != c.two_head
    c = apply_overrides(preset("potsdam3"), ["lr=3e-5", "pairs.flip_p=0", "micro_batch=25", "amp=off"])
    assert (c.lr, c.pairs, c.micro_batch, c.amp) == (3e-5, {"flip_p": 0}, 25, "off")
    with pytest.raises(ValueError, match="unknown config key"):
        apply_overrides(c, ["learning_rate=1"])
    with pytest.raises(ValueError, match="takes a int"):
        apply_overrides(c, ["batch_size=big"])
    with pytest.raises(ValueError, match="unknown preset"):
        preset("nope")
    with pytest.raises(ValueError, match="data-root"):
        Trainer(preset("potsdam3", device="cpu"), "/tmp/never-written")


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tmp_path):
    """torchrun, 2 CPU processes (gloo): joints all-reduced, rank 0 writes the run directory."""
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    out = tmp_path / "ddp"
    cmd = ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "iic_fast.cli", "train", "--out", str(out),
           "--max-steps", "2", "--no-progress", "--device", "cpu", "--set", "n_train=16", "--set", "n_test=4",
           "--set", "input_size=32", "--batch-size", "4", "--set", "candidates=1", "--set", "candidate_jobs=1"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # importable without an install
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["steps"] == 2
    assert (out / "latest.pt").is_file()


def test_schedule_walks_passes_and_epochs_and_knows_its_length():
    c = clu_config(head_A_warmup_epochs=1)  # then B_then_A with head_B_epochs 2: passes B, B, A
    pass_steps = {"A": 2, "B": 1}.__getitem__
    pos, heads, ends = Position(), [], []
    for step in range(1, 11):
        heads.append(schedule.head(c, pos))
        if schedule.advance(c, pos, pass_steps):
            ends.append(step)
    assert "".join(heads) == "AA" + "BBAA" + "BBAA" and ends == [2, 6, 10]
    assert schedule.horizon(clu_config(head_A_warmup_epochs=1, max_epochs=2, max_steps=0), pass_steps) == 2 + 4
    assert schedule.horizon(clu_config(head_A_warmup_epochs=1, max_epochs=2, max_steps=5), pass_steps) == 5
    assert schedule.horizon(clu_config(max_steps=0, max_minutes=0.0), pass_steps) == 0
    with pytest.raises(ValueError, match="cosine"):
        schedule.horizon(clu_config(lr_schedule="cosine", max_steps=0, max_minutes=0.0), pass_steps)
    assert schedule.fit_steps(50, 30.0, 0.5, 300.0) == 50 + int(0.9 * 270 / 0.5)
    assert schedule.fit_steps(50, 400.0, 0.5, 300.0) == 51  # over budget already: one more step
    assert schedule.fit_steps(50, 30.0, 0.5, 300.0, reserve=20.0) == 50 + int(0.9 * 250 / 0.5)
    pace = schedule.Pace(first_step=10, skip=2, window=4)
    assert [pace.update(s, 5.0 + 0.5 * (s - 12)) for s in range(11, 18)] == [None] * 5 + [0.5, None]
    with pytest.raises(ValueError, match="'schedule'"):
        TrainState.from_dict({"position": {}, "stats": {}})


def test_a_shortened_schedule_shortens_the_head_A_warm_up():
    c = clu_config(head_A_warmup_epochs=15)
    assert schedule.warmup_epochs(c, Schedule(horizon=1500, time_steps=0)) == 15  # no plan yet
    assert schedule.warmup_epochs(c, Schedule(horizon=1500, time_steps=1500)) == 15
    assert schedule.warmup_epochs(c, Schedule(horizon=1500, time_steps=700)) == 7  # ceil(15 * 700 / 1500)
    # while the warm-up runs, a later plan that lengthens the schedule lengthens it again
    assert schedule.warmup_epochs(c, Schedule(horizon=1500, time_steps=1400)) == 14
    assert schedule.warmup_epochs(c, Schedule(horizon=0, time_steps=700)) == 15  # no horizon
    short = Schedule(horizon=1500, time_steps=100)  # warm-up of ceil(1.0) = 1 epoch
    assert [schedule.head(c, Position(epoch=e), short) for e in (0, 1)] == ["A", "B"]
    assert schedule.head(c, Position(epoch=1)) == "A"  # the config's 15 epochs without a plan
    # a step past the warm-up fixes where it ended: a longer plan then leaves it there
    pos = Position(epoch=1)
    schedule.advance(c, pos, lambda head: 10, short)
    short.time_steps = 1500
    assert short.warmup_end == 1 and schedule.head(c, pos, short) == "B"


def test_restart_fractions_follow_the_longest_plan():
    """Sub-head restarts sit at fractions of the horizon, or of the longest plan when the machine is too slow
    for the horizon: a brief pessimistic re-plan (a moment of load) does not move a restart earlier."""
    c = clu_config(subhead_restarts=[0.33, 0.66])
    sched = Schedule(horizon=1500)  # no plan yet: the horizon
    assert [schedule.restarts_passed(c, s, sched) for s in (494, 495, 989, 990)] == [0, 1, 1, 2]
    sched.time_steps = sched.longest_plan = 1600
    sched.time_steps = 1380  # a brief dip
    assert [schedule.restarts_passed(c, s, sched) for s in (456, 494, 495, 990)] == [0, 0, 1, 2]
    slow = Schedule(horizon=1500, time_steps=900, longest_plan=900)  # fractions of the run it can afford
    assert [schedule.restarts_passed(c, s, slow) for s in (296, 297, 594, 900)] == [0, 1, 2, 0]  # none at its end


def test_time_plan_keeps_room_for_slow_evaluations(tmp_path, monkeypatch):
    """A fake clock: a 10 s first step (start-up), then 1 s per step and 20 s per evaluation, in a 120 s budget.
    The pace window (steps 1-3) gives 1 s per step: 99 of the 100 steps fit. After the evaluation at step 5
    the pace since the window's start, evaluations included, is 6 s per step and 20 s stay in reserve:
    14 steps fit (13 if the start-up step were counted in the pace). Later re-plans measure less time
    per step (49 s / 9 steps at step 10: 16 fit; 74 s / 14 at step 15: 17 fit), so the run ends at 17
    steps and 107 s."""
    evals = []
    real_pace, real_run = schedule.Pace, Evaluator.run
    monkeypatch.setattr(Evaluator, "run", lambda self, *a: evals.append(1) or real_run(self, *a))
    monkeypatch.setattr(Trainer, "elapsed", lambda self: self.step + 10.0 * (self.step > 0) + 20.0 * len(evals))
    monkeypatch.setattr(schedule, "Pace", lambda first_step: real_pace(first_step, skip=1, window=2))
    c = seg_config(max_steps=100, max_minutes=2.0, eval_every=5, lr_schedule="cosine")
    summary = Trainer(c, str(tmp_path)).fit()
    assert summary["steps"] == summary["schedule_steps"] == 17 and not summary["cut_by_time"]
    assert summary["train_seconds"] == 17 + 10 + 20 * 4 <= 120
    lrs = {r["step"]: r["lr"] for r in _read(tmp_path / "metrics.jsonl") if r["kind"] == "train"}
    assert lrs[4] == pytest.approx(c.lr * 0.5 * (1 + math.cos(math.pi * 4 / 99)))  # the first plan
    assert lrs[6] == pytest.approx(c.lr * 0.5 * (1 + math.cos(math.pi * 6 / 14)))
    assert lrs[11] == pytest.approx(c.lr * 0.5 * (1 + math.cos(math.pi * 11 / 16)))  # lengthened
    assert load_checkpoint(tmp_path / "latest.pt")["schedule"] == {"horizon": 100, "time_steps": 17, "warmup_end": 0,
                                                                   "longest_plan": 99}
    pace = real_pace(first_step=10, skip=2, window=4)
    pace.update(12, 5.0)
    assert pace.since_start(12, 5.0) is None and pace.since_start(16, 7.0) == 0.5


def test_time_budget_lays_the_cosine_over_the_steps_that_fit(tmp_path, monkeypatch, capsys):
    class SlowMachine:  # measures 100 s per step at step 3
        def __init__(self, first_step):
            pass

        def update(self, step, seconds):
            return 100.0 if step == 3 else None

        def since_start(self, step, seconds):  # no plans after evaluations
            return None

    monkeypatch.setattr(schedule, "Pace", SlowMachine)
    c = seg_config(max_steps=20, max_minutes=10.0, eval_every=4, lr_schedule="cosine", progress=True)
    summary = Trainer(c, str(tmp_path)).fit()
    # 0.9 of the ~600 s left at 100 s per step: 5 more steps after step 3
    assert summary["steps"] == summary["schedule_steps"] == 8 and not summary["cut_by_time"]
    lrs = {r["step"]: r["lr"] for r in _read(tmp_path / "metrics.jsonl") if r["kind"] == "train"}
    assert lrs[2] == pytest.approx(c.lr * 0.5 * (1 + math.cos(math.pi * 2 / 20)))  # before the plan
    assert lrs[5] == pytest.approx(c.lr * 0.5 * (1 + math.cos(math.pi * 5 / 8)))
    assert lrs[8] == 0.0
    assert load_checkpoint(tmp_path / "latest.pt")["schedule"] == {"horizon": 20, "time_steps": 8, "warmup_end": 0,
                                                                   "longest_plan": 8}
    bar = capsys.readouterr().err
    assert "8/8" in bar and "acc=" in bar and "nan" not in bar
