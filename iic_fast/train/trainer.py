"""The IIC trainer: one loop for segmentation and clustering (see ``config`` for the semantics).

    from iic_fast.train import Trainer, preset
    summary = Trainer(preset("textures3", max_steps=200), out="runs/demo").fit()

``fit`` is a flat loop: train one step, record it, advance the schedule (``schedule``), evaluate when
due. Where the run stands lives in one ``TrainState`` (``state``), which a checkpoint saves and a
resume restores along with weights, optimiser, batch streams and RNGs. With ``candidates`` the loop
first continues the best of several independent starts (``candidates``).

Under ``torchrun`` (WORLD_SIZE > 1) the process group is initialised from the environment, the net is
wrapped in DistributedDataParallel, every rank trains on its slice of each global batch, and the IIC
joints are all-reduced so the loss and gradient are those of the global batch. Rank 0 evaluates and
writes the run directory.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist
from torch import nn

from . import candidates as cand
from . import checkpoint as ck
from . import schedule
from .config import TrainConfig
from .data import build_data
from .evaluation import Evaluator
from .report import Progress, plot_curves, write_json
from .runtime import build_model, init_distributed, reduce_over_ranks, resolve_device
from .state import Schedule, TrainState
from .steps import NonFiniteLossError, PairNet, StepRunner, restart_subheads, worse_half
from .tensorboard import metrics_log


class Trainer:
    """Builds data, network and optimiser from ``config``; ``fit()`` trains, evaluates, checkpoints
    and returns the summary dict (also written to ``out/summary.json``).

    Args:
        config: the run's configuration.
        out: run directory (created). ``resume=True`` continues from ``out/latest.pt``.
        net: optional prebuilt network (same call convention as ``iic_fast.models``) instead of
            ``config.arch``.
        candidate: which of the ``candidates`` this run is (its weights and augmentations are seeded
            with ``seed + candidates.SEED_STRIDE * candidate``; the data order stays the seed's).
    """

    def __init__(self, config: TrainConfig, out: str, *, resume: bool = False,
                 net: Optional[nn.Module] = None, candidate: int = 0) -> None:
        self.config = config.validate()
        self.out = out
        self.device = resolve_device(config.device)
        self.rank, self.world = init_distributed(self.device)
        if config.candidates > 1 and self.world > 1:
            raise ValueError("candidates > 1 runs on one process only, not under torchrun (one start: "
                             "--set candidates=1 --set candidate_jobs=1)")
        self.main = self.rank == 0
        seed = config.seed + cand.SEED_STRIDE * candidate
        ck.seed_everything(seed)
        self.data = build_data(config, self.device, self.rank, self.world)
        model = build_model(config, self.data, self.device, net)
        self.net = model.net
        self._initial_main_head = ({k: v.clone() for k, v in self._main_head().state_dict().items()}
                                   if config.subhead_restarts else {})  # restarts go back to these weights
        self.pair_net: nn.Module = PairNet(self.net, config.two_head)
        if self.world > 1:
            self.pair_net = nn.parallel.DistributedDataParallel(
                self.pair_net, device_ids=[self.device] if self.device.type == "cuda" else None,
                find_unused_parameters=config.two_head)  # the idle head has no gradient
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.scaler = torch.amp.GradScaler(self.device.type) if model.amp_dtype == torch.float16 else None
        self.runner = StepRunner(self.pair_net, segmentation=self.data.segmentation, d=config.d,
                                 collapsed=config.collapsed, impl=config.impl, autocast=model.autocast)
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + self.rank)
        self.evaluator = Evaluator(self.net, self.data, config, self.device, model.autocast)
        self.state = TrainState(schedule=Schedule(horizon=schedule.horizon(config, self.pass_steps)))
        self._t0: Optional[float] = None  # wall clock at the start of this session's training time
        self.log = metrics_log(out, config.tensorboard, self.evaluator.render)  # + TensorBoard if asked
        if self.main:
            os.makedirs(out, exist_ok=True)
            write_json(os.path.join(out, "config.json"), config.to_dict())
        self.resumed = resume  # with candidates: also of the candidates' runs
        latest = os.path.join(out, "latest.pt")
        if resume and (config.candidates == 1 or os.path.exists(latest)):  # else: killed among the candidates
            self.restore(ck.load(latest, map_location=self.device))
        elif self.main and os.path.exists(self.log.path):
            os.remove(self.log.path)

    @property
    def step(self) -> int:
        """Optimiser steps taken so far."""
        return self.state.position.step

    def pass_steps(self, head: str) -> int:
        """Steps of one pass of ``head``: ``epoch_steps``, or one pass over the head's training set."""
        return self.config.epoch_steps or len(self.data.streams[head])

    def lr(self) -> float:
        """The learning rate at the current step."""
        return self.config.lr * schedule.lr_factor(self.config, self.step, self.state.schedule.steps)

    # ------------------------------------------------------------------ one step
    def train_step(self, head: str) -> List[tuple]:
        """One optimiser step of ``head`` on the next batch; returns (loss, loss_no_lamb) per sub-head."""
        c = self.config
        batch = self.data.pair_batch(self.data.streams[head].next(), self.generator)
        lamb = c.lamb_A if head == "A" else c.lamb_B
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr()
        self.optimizer.zero_grad(set_to_none=True)
        self.net.train()
        local = batch[0].shape[0]
        if self.world > 1 or 0 < c.micro_batch < local:
            scale = self.scaler.scale if self.scaler is not None else (lambda g: g)
            no_sync = getattr(self.pair_net, "no_sync", contextlib.nullcontext)
            losses = self.runner.accumulated(batch, head, lamb, c.micro_batch or local, self.net, scale, no_sync)
        else:
            backward = (lambda l: self.scaler.scale(l).backward()) if self.scaler else (lambda l: l.backward())
            losses = self.runner.direct(batch, head, lamb, backward)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), float("inf"))
        if not torch.isfinite(norm) and self.scaler is None:
            raise NonFiniteLossError(f"the gradient of head {head} is not finite")
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skips the step on inf/NaN gradients, lowers the scale
            self.scaler.update()
        else:
            self.optimizer.step()
        return losses

    # ------------------------------------------------------------------ loop
    def fit(self) -> Dict[str, Any]:
        """Trains until the schedule or a budget ends, evaluates, saves, and returns the summary."""
        if self.config.candidates > 1 and not self.state.stats.candidate_losses:
            cand.continue_best(self, cand.train_candidates(self, self._make_candidate))
        self.train_until()
        self.evaluate_final()
        return self.finish()

    def evaluate_final(self) -> None:
        """The final evaluation, unless it is done at this step (a finished run resumed) or, without
        ``selection_passes``, the last evaluation is at this step already."""
        st = self.state.stats
        if st.final_step != self.step and (st.last_eval_step != self.step or self.config.selection_passes):
            self.evaluate_and_save(final=True)

    def train_until(self, stop_at: Optional[int] = None, desc: Optional[str] = None, position: int = 0) -> None:
        """The training loop, until the schedule or a budget ends or, with ``stop_at``, until the first
        evaluation at or past step ``stop_at`` (whose checkpoint is then where the run stands); ``position``:
        the progress bar's line (candidates trained at once)."""
        c, pos, sched = self.config, self.state.position, self.state.schedule
        self._t0 = time.time()
        plan = schedule.TimePlan(60 * c.max_minutes, sched, pos.step, self._agree) if c.max_minutes else None
        bar = Progress(stop_at or sched.steps, pos.step, desc or c.preset, c.progress and self.main, position)
        try:
            while self._budget_left() and not (stop_at and pos.step >= stop_at and
                                               self.state.stats.last_eval_step == pos.step):
                head = schedule.head(c, pos, sched)
                losses = self.train_step(head)
                pos.step += 1
                self._record(head, losses)
                epoch_ended = schedule.advance(c, pos, self.pass_steps, sched)
                if plan and plan.after_step(self.step, self.elapsed()):
                    bar.retotal(sched.steps)
                bar.update(head, losses[0][0], self.state.stats.last_acc)
                if (c.eval_every and pos.step % c.eval_every == 0) or (epoch_ended and not c.eval_every):
                    t = self.elapsed()
                    self.evaluate_and_save()
                    if plan and plan.after_evaluation(self.step, self.elapsed(), self.elapsed() - t):
                        bar.retotal(sched.steps)
        finally:
            bar.close()

    @staticmethod
    def _make_candidate(config: TrainConfig, out: str, resume: bool, index: int) -> "Trainer":
        return Trainer(config, out, resume=resume, candidate=index)

    def elapsed(self) -> float:
        """Wall seconds of training so far, evaluations included, over every resumed session."""
        return self.state.stats.seconds + (time.time() - self._t0 if self._t0 is not None else 0.0)

    def _budget_left(self) -> bool:
        c, steps = self.config, self.state.schedule.steps
        over = bool((steps and self.step >= steps) or (c.max_minutes and self.elapsed() >= 60 * c.max_minutes))
        return not reduce_over_ranks(over, dist.ReduceOp.MAX, self.device)  # time differs per rank: stop together

    def _agree(self, steps: int) -> int:
        """The smallest of the ranks' planned ``steps`` (every rank must plan the same length)."""
        return int(reduce_over_ranks(steps, dist.ReduceOp.MIN, self.device))

    def _record(self, head: str, losses: List[tuple]) -> None:
        """Running sums for the train records (every ``log_every`` steps) and the sub-head selection."""
        self.state.stats.add(head, losses)
        if self.step % self.config.log_every == 0:
            rec: Dict[str, Any] = {"kind": "train", "step": self.step, "epoch": self.state.position.epoch,
                                   "lr": self.lr(), **self.state.stats.take_window()}
            if self.main:
                self.log.append(rec)

    def evaluate_and_save(self, final: bool = False) -> Dict[str, Any]:
        """Evaluates the main head on the test data (rank 0), logs it, restarts sub-heads when a
        ``subhead_restarts`` fraction has passed, writes latest.pt (and best.pt when the selected
        sub-head's accuracy improved). The ``final`` evaluation picks the sub-head by its evaluation-mode
        loss when ``selection_passes`` asks. Returns the eval record (empty off rank 0)."""
        st = self.state.stats
        losses = st.take_subhead_losses(self.config.num_sub_heads)
        st.last_eval_step = self.step
        if final:
            st.final_step = self.step
        passed = schedule.restarts_passed(self.config, self.step, self.state.schedule)
        restart = worse_half(losses) if passed > st.restarts else []
        rec: Dict[str, Any] = {}
        improved = False
        if self.main:
            t = time.time()
            select = final and self.config.selection_passes > 0
            chosen = losses
            if select:  # saved in the checkpoint: load_run / evaluate_run pick the same sub-head
                chosen = st.last_losses = self.evaluator.selection_losses(self.config.selection_passes)
                st.selection = "lowest_eval_mode_loss"
            result = self.evaluator.run(chosen, st.selection)
            rec = {"kind": "eval", "step": self.step, "epoch": self.state.position.epoch,
                   "seconds": self.elapsed(), "eval_seconds": time.time() - t, **result,
                   **({"subhead_train_losses": losses} if select else {}),
                   **({"restarted_subheads": restart} if restart else {})}
            self.log.append(rec)
            st.last_acc = result["test_acc"]
            improved = result["test_acc"] is None or result["test_acc"] > st.best["acc"]  # no labels: latest
            if improved:
                st.best = {"acc": result["test_acc"], "step": self.step}
            self._check_weights()
        if restart:
            restart_subheads(self._main_head(), restart, self._initial_main_head, self.optimizer)
        st.restarts = max(st.restarts, passed)
        if self.main:  # best.pt first: a kill between the writes resumes from the previous latest.pt and redoes both
            state = self.checkpoint()
            if improved:
                ck.save_atomic(state, os.path.join(self.out, "best.pt"))
            ck.save_atomic(state, os.path.join(self.out, "latest.pt"))
        if self.world > 1:
            dist.barrier()
        return rec

    def _main_head(self) -> nn.Module:
        """The main head's sub-heads: ``head_B`` of a two-head net, ``head`` of a single-head one."""
        name = "head_B" if self.config.two_head else "head"
        if not hasattr(self.net, name):
            raise ValueError(f"subhead_restarts needs a net whose main head is its attribute {name!r}")
        return getattr(self.net, name)

    def _check_weights(self) -> None:
        """Never checkpoint a broken network."""
        if not all(bool(torch.isfinite(p).all()) for p in self.net.parameters()):
            raise NonFiniteLossError("the network's weights are not finite")

    # ------------------------------------------------------------------ state
    def checkpoint(self) -> Dict[str, Any]:
        """Everything needed to continue exactly: weights, optimiser, batch streams, RNGs, the main head's
        initial weights (for ``subhead_restarts``) and the TrainState (its parts "position", "schedule",
        "stats" at the top level)."""
        if self._t0 is not None:  # fold this session's time into the state
            now = time.time()
            self.state.stats.seconds += now - self._t0
            self._t0 = now
        return {
            "format": ck.FORMAT, "config": self.config.to_dict(), "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "streams": {h: s.state() for h, s in self.data.streams.items()},
            "rng": ck.rng_state(self.generator), "initial_main_head": self._initial_main_head,
            **self.state.to_dict(),
        }

    def restore(self, ckpt: Dict[str, Any]) -> None:
        """Inverse of ``checkpoint``; the metrics log is cut back to the checkpoint's step."""
        self.net.load_state_dict(ckpt["net"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt["scaler"] is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        for h, s in ckpt["streams"].items():
            self.data.streams[h].load_state(s)
        ck.set_rng_state(ckpt["rng"], self.generator)
        self._initial_main_head = ckpt.get("initial_main_head", self._initial_main_head)  # a candidate's own
        horizon = self.state.schedule.horizon  # of this session's config
        self.state = TrainState.from_dict(ckpt)
        self.state.schedule.horizon = horizon
        if self.main:
            self.log.truncate(self.step)

    def finish(self) -> Dict[str, Any]:
        """summary.json, plots.png and predictions.png; returns the summary (rank 0; {} elsewhere)."""
        if not self.main:
            return {}
        records = self.log.read()
        last = [r for r in records if r.get("kind") == "eval"][-1]
        c, st, steps = self.config, self.state.stats, self.state.schedule.steps
        summary = {
            "preset": c.preset, "dataset": c.dataset, "mode": c.mode,
            "test_acc": last["test_acc"], "test_acc_selection": last["test_acc_selection"],
            "test_acc_best_subhead": last["test_acc_best_subhead"],
            "nmi": last["nmi"], "ari": last["ari"], "miou": last["miou"], "match": last["match"],
            "best_acc": st.best["acc"], "best_step": st.best["step"],
            "train_seconds": round(self.elapsed(), 2), "steps": self.step, "epochs": self.state.position.epoch,
            "schedule_steps": steps, "cut_by_time": bool(steps and self.step < steps),
            "seed": c.seed, "device": str(self.device), "world_size": self.world,
            "run_dir": os.path.abspath(self.out),
            **({"candidate": st.candidate, "candidate_losses": st.candidate_losses} if c.candidates > 1 else {}),
        }
        write_json(os.path.join(self.out, "summary.json"), summary)
        plot_curves(records, os.path.join(self.out, "plots.png"), f"{c.preset} (seed {c.seed})")
        self.evaluator.render(os.path.join(self.out, "predictions.png"), last)
        return summary
