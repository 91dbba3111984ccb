"""The IIC trainer: one loop for segmentation and clustering (see ``config`` for the semantics).

    from iic_fast.train import Trainer, preset
    summary = Trainer(preset("textures3", max_steps=200), out="runs/demo").fit()

Under ``torchrun`` (WORLD_SIZE > 1) the process group is initialised from the environment, the net is
wrapped in DistributedDataParallel, every rank trains on its slice of each global batch, and the IIC
joints are all-reduced so the loss and gradient are those of the global batch. Rank 0 evaluates and
writes the run directory.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist
from torch import nn

from . import checkpoint as ck
from .config import TrainConfig
from .data import build_data, build_net
from .evaluation import Evaluator
from .report import MetricsLog, plot_curves, write_json
from .runtime import amp_dtype, autocast_factory, init_distributed, resolve_device, use_channels_last
from .steps import NonFiniteLossError, PairNet, StepRunner


class Trainer:
    """Builds data, network and optimiser from ``config``; ``fit()`` trains, evaluates, checkpoints
    and returns the summary dict (also written to ``out/summary.json``).

    Args:
        config: the run's configuration.
        out: run directory (created). ``resume=True`` continues from ``out/latest.pt``.
        net: optional prebuilt network (same call convention as ``iic_fast.models``) instead of
            ``config.arch``.
    """

    def __init__(self, config: TrainConfig, out: str, *, resume: bool = False,
                 net: Optional[nn.Module] = None) -> None:
        self.config = config.validate()
        self.out = out
        self.device = resolve_device(config.device)
        self.rank, self.world = init_distributed(self.device)
        self.main = self.rank == 0
        ck.seed_everything(config.seed)
        self.data = build_data(config, self.device, self.rank, self.world)
        self.net = (net if net is not None else build_net(config, self.data)).to(self.device)
        if config.channels_last:
            use_channels_last(self.net)
        self.pair_net: nn.Module = PairNet(self.net, config.two_head)
        if self.world > 1:
            self.pair_net = nn.parallel.DistributedDataParallel(
                self.pair_net, device_ids=[self.device] if self.device.type == "cuda" else None,
                find_unused_parameters=config.two_head)  # the idle head has no gradient
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.amp_dtype = amp_dtype(config.amp, self.device)
        self._autocast = autocast_factory(self.amp_dtype, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.runner = StepRunner(self.pair_net, segmentation=self.data.segmentation, d=config.d,
                                 collapsed=config.collapsed, impl=config.impl, autocast=self._autocast)
        self.generator = torch.Generator().manual_seed(config.seed * 1_000_003 + self.rank)
        self.evaluator = Evaluator(self.net, self.data, config, self.device, self._autocast)
        # position in the schedule and running statistics (all checkpointed)
        self.step = self.epoch = self.phase = self.phase_step = 0
        self.prior_seconds, self._t0 = 0.0, None
        self.window: Dict[str, List[float]] = {}  # per-head loss sums since the last train record
        self.subhead_sums: List[float] = []  # main head: per-sub-head loss sums + count since last eval
        self.last_losses: Optional[List[float]] = None
        self.best: Dict[str, Any] = {"acc": -1.0, "step": 0}
        self.last_acc = float("nan")
        self.last_eval_step = -1
        self.log = MetricsLog(os.path.join(out, "metrics.jsonl"))
        if self.main:
            os.makedirs(out, exist_ok=True)
            write_json(os.path.join(out, "config.json"), config.to_dict())
        if resume:
            self._load(os.path.join(out, "latest.pt"))
        elif self.main and os.path.exists(self.log.path):
            os.remove(self.log.path)

    # ------------------------------------------------------------------ schedule
    def phases(self, epoch: int) -> List[str]:
        """Heads trained in ``epoch``, one pass each (see ``config.head_schedule``)."""
        c = self.config
        if c.head_schedule == "single":
            return ["B"]
        if epoch < c.head_A_warmup_epochs:
            return ["A"]
        if c.head_schedule == "alternate":
            return ["A" if epoch % 2 == 0 else "B"]
        a, b = ["A"] * c.head_A_epochs, ["B"] * c.head_B_epochs
        return a + b if c.head_schedule == "A_then_B" else b + a

    def pass_steps(self, head: str) -> int:
        return self.config.epoch_steps or len(self.data.streams[head])

    def _lr_factor(self) -> float:
        c = self.config
        if c.lr_schedule == "cosine" and c.max_steps:
            return 0.5 * (1.0 + math.cos(math.pi * min(self.step / c.max_steps, 1.0)))
        return 1.0

    # ------------------------------------------------------------------ one step
    def train_step(self, head: str) -> List[tuple]:
        """One optimiser step of ``head`` on the next batch; returns (loss, loss_no_lamb) per sub-head."""
        c = self.config
        raw = self.data.streams[head].next()
        if self.data.segmentation:
            batch = self.data.pairs(raw[0], raw[2], self.generator)
        else:
            x1, x2s = self.data.pairs(raw[0], self.generator)
            batch = (torch.cat([x1] * len(x2s)), torch.cat(x2s), None, None)
        lamb = c.lamb_A if head == "A" else c.lamb_B
        for group in self.optimizer.param_groups:
            group["lr"] = c.lr * self._lr_factor()
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
    def elapsed(self) -> float:
        """Wall seconds of training so far, evaluations included, over every resumed session."""
        return self.prior_seconds + (time.time() - self._t0 if self._t0 is not None else 0.0)

    def _budget_left(self) -> bool:
        c = self.config
        over = bool((c.max_steps and self.step >= c.max_steps) or (c.max_epochs and self.epoch >= c.max_epochs)
                    or (c.max_minutes and self.elapsed() >= 60 * c.max_minutes))
        if self.world > 1:  # time budgets differ per rank: stop together
            flag = torch.tensor(float(over), device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            over = bool(flag)
        return not over

    def fit(self) -> Dict[str, Any]:
        """Trains until a budget runs out, evaluates, saves, and returns the summary."""
        from tqdm.auto import tqdm

        c = self.config
        self._t0 = time.time()
        bar = tqdm(total=c.max_steps or None, initial=self.step, disable=not (c.progress and self.main),
                   desc=c.preset, unit="step", dynamic_ncols=True)
        try:
            while self._budget_left():
                phases = self.phases(self.epoch)
                head = phases[self.phase]
                losses = self.train_step(head)
                self.step += 1
                self.phase_step += 1
                self._record(head, losses)
                bar.update(1)
                bar.set_postfix(head=head, loss=f"{losses[0][0]:.3f}", acc=f"{self.last_acc:.3f}")
                if self.phase_step >= self.pass_steps(head):
                    self.phase, self.phase_step = self.phase + 1, 0
                    if self.phase == len(phases):
                        self.epoch, self.phase = self.epoch + 1, 0
                        if not c.eval_every:
                            self.evaluate_and_save()
                if c.eval_every and self.step % c.eval_every == 0:
                    self.evaluate_and_save()
        finally:
            bar.close()
        if self.last_eval_step != self.step:
            self.evaluate_and_save()
        return self.finish()

    def _record(self, head: str, losses: List[tuple]) -> None:
        """Running sums for the train records (every ``log_every`` steps) and the sub-head selection."""
        h = len(losses)
        w = self.window.setdefault(head, [0.0, 0.0, 0])
        w[0] += sum(l for l, _ in losses) / h
        w[1] += sum(ln for _, ln in losses) / h
        w[2] += 1
        if head == "B":
            sums = self.subhead_sums or [0.0] * (h + 1)
            self.subhead_sums = [s + l for s, l in zip(sums, [l for l, _ in losses] + [1.0])]
        if self.step % self.config.log_every == 0:
            rec: Dict[str, Any] = {"kind": "train", "step": self.step, "epoch": self.epoch,
                                   "lr": self.config.lr * self._lr_factor()}
            for hd, (l, ln, n) in sorted(self.window.items()):
                rec[f"loss_{hd}"], rec[f"loss_no_lamb_{hd}"] = l / n, ln / n
            if self.main:
                self.log.append(rec)
            self.window = {}

    def _subhead_losses(self) -> List[float]:
        """Mean training loss of each main-head sub-head since the last evaluation (label-free
        selection; the last known values when the main head was idle, zeros before any B step)."""
        if self.subhead_sums:
            self.last_losses = [s / self.subhead_sums[-1] for s in self.subhead_sums[:-1]]
        self.subhead_sums = []
        return self.last_losses or [0.0] * self.config.num_sub_heads

    def evaluate_and_save(self) -> Dict[str, Any]:
        """Evaluates the main head on the test data (rank 0), logs it, writes latest.pt (and best.pt
        when the selected sub-head's accuracy improved). Returns the eval record (empty off rank 0)."""
        losses = self._subhead_losses()
        self.last_eval_step = self.step
        rec: Dict[str, Any] = {}
        if self.main:
            t = time.time()
            result = self.evaluator.run(losses)
            rec = {"kind": "eval", "step": self.step, "epoch": self.epoch, "seconds": self.elapsed(),
                   "eval_seconds": time.time() - t, **result}
            self.log.append(rec)
            self.last_acc = result["test_acc"]
            improved = result["test_acc"] > self.best["acc"]
            if improved:
                self.best = {"acc": result["test_acc"], "step": self.step}
            self._check_weights()
            state = self.state()
            ck.save_atomic(state, os.path.join(self.out, "latest.pt"))
            if improved:
                ck.save_atomic(state, os.path.join(self.out, "best.pt"))
        if self.world > 1:
            dist.barrier()
        return rec

    def _check_weights(self) -> None:
        """Never checkpoint a broken network."""
        if not all(bool(torch.isfinite(p).all()) for p in self.net.parameters()):
            raise NonFiniteLossError("the network's weights are not finite")

    # ------------------------------------------------------------------ state
    def state(self) -> Dict[str, Any]:
        """Everything needed to continue exactly: weights, optimiser, position, RNGs, statistics."""
        return {
            "format": ck.FORMAT, "config": self.config.to_dict(), "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "position": {"step": self.step, "epoch": self.epoch, "phase": self.phase,
                         "phase_step": self.phase_step},
            "streams": {h: s.state() for h, s in self.data.streams.items()},
            "rng": ck.rng_state(self.generator), "seconds": self.elapsed(),
            "stats": {"window": self.window, "subhead_sums": self.subhead_sums,
                      "last_losses": self.last_losses, "best": self.best, "last_acc": self.last_acc},
        }

    def _load(self, path: str) -> None:
        state = ck.load(path, map_location=self.device)
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        pos = state["position"]
        self.step, self.epoch, self.phase, self.phase_step = (pos[k] for k in ("step", "epoch", "phase", "phase_step"))
        for h, s in state["streams"].items():
            self.data.streams[h].load_state(s)
        ck.set_rng_state(state["rng"], self.generator)
        self.prior_seconds = float(state["seconds"])
        st = state["stats"]
        self.window, self.subhead_sums, self.last_losses = st["window"], st["subhead_sums"], st["last_losses"]
        self.best, self.last_acc = st["best"], st["last_acc"]
        self.last_eval_step = self.step
        if self.main:
            self.log.truncate(self.step)

    def finish(self) -> Dict[str, Any]:
        """summary.json, plots.png and predictions.png; returns the summary (rank 0; {} elsewhere)."""
        if not self.main:
            return {}
        records = self.log.read()
        last = [r for r in records if r.get("kind") == "eval"][-1]
        summary = {
            "preset": self.config.preset, "dataset": self.config.dataset, "mode": self.config.mode,
            "test_acc": last["test_acc"], "test_acc_best_subhead": last["test_acc_best_subhead"],
            "nmi": last["nmi"], "ari": last["ari"], "miou": last["miou"], "match": last["match"],
            "best_acc": self.best["acc"], "best_step": self.best["step"],
            "train_seconds": round(self.elapsed(), 2), "steps": self.step, "epochs": self.epoch,
            "seed": self.config.seed, "device": str(self.device), "world_size": self.world,
            "run_dir": os.path.abspath(self.out),
        }
        write_json(os.path.join(self.out, "summary.json"), summary)
        plot_curves(records, os.path.join(self.out, "plots.png"), f"{self.config.preset} (seed {self.config.seed})")
        self.evaluator.render(os.path.join(self.out, "predictions.png"), last)
        return summary
