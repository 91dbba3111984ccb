"""The trainer's own state: where a run is in its schedule, how long the schedule is, and the running
statistics. Everything here goes into a checkpoint through ``to_dict`` / ``from_dict`` (one place, so a
new field is saved and restored without touching the trainer's checkpoint code).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class Position:
    """Where the run is: optimiser steps taken, epoch, head pass within the epoch, steps into that pass."""

    step: int = 0
    epoch: int = 0
    phase: int = 0
    phase_step: int = 0


@dataclass
class Schedule:
    """The run's length in steps: ``horizon`` from the step and epoch budgets (re-derived from the
    config in every session, so a resume with a larger budget goes on; 0: none) and ``time_steps``,
    the time budget's latest plan (0: no plan yet or no time budget); ``warmup_end`` is the epoch at
    which the head-A warm-up ended, fixed once the run is past it (0: not yet), so that a later plan
    never moves a warm-up already over; ``longest_plan`` the longest plan so far (0: none)."""

    horizon: int = 0
    time_steps: int = 0
    warmup_end: int = 0
    longest_plan: int = 0

    @property
    def steps(self) -> int:
        """The schedule's length: the smaller of ``horizon`` and ``time_steps`` that are set (0: none)."""
        return min((n for n in (self.horizon, self.time_steps) if n), default=0)

    @property
    def restart_steps(self) -> int:
        """The length that ``subhead_restarts`` fractions refer to: the smaller of ``horizon`` and
        ``longest_plan`` that are set, so that a brief pessimistic re-plan (a moment of load) does not move a
        restart earlier, while a machine too slow for the horizon still restarts within its run."""
        return min((n for n in (self.horizon, self.longest_plan) if n), default=0)


@dataclass
class Stats:
    """Running statistics: training seconds up to the last checkpoint (evaluations included), per-head
    loss sums of the current log window ([loss, loss_no_lamb, count]), per-sub-head loss sums of the
    main head since the last evaluation (count last), the last selection losses, the best evaluation,
    the last accuracy (None before the first evaluation) and its step, the final evaluation's step, the
    ``subhead_restarts`` fractions passed, and with ``candidates`` the one this run continues and every
    candidate's loss."""

    seconds: float = 0.0
    window: Dict[str, List[float]] = field(default_factory=dict)
    subhead_sums: List[float] = field(default_factory=list)
    last_losses: Optional[List[float]] = None
    selection: str = "lowest_loss"  # what last_losses are: the training window's, or "lowest_eval_mode_loss"
    best: Dict[str, Any] = field(default_factory=lambda: {"acc": -1.0, "step": 0})
    last_acc: Optional[float] = None
    last_eval_step: int = -1
    final_step: int = -1  # the step of the run's final evaluation (-1: none yet)
    restarts: int = 0
    candidate: int = 0
    candidate_losses: List[float] = field(default_factory=list)

    def add(self, head: str, losses: List[tuple]) -> None:
        """Adds one step of ``head`` ((loss, loss_no_lamb) per sub-head) to the window's sums and, for
        the main head "B", to the per-sub-head sums."""
        h = len(losses)
        w = self.window.setdefault(head, [0.0, 0.0, 0])
        w[0] += sum(l for l, _ in losses) / h
        w[1] += sum(ln for _, ln in losses) / h
        w[2] += 1
        if head == "B":
            sums = self.subhead_sums or [0.0] * (h + 1)
            self.subhead_sums = [s + l for s, l in zip(sums, [l for l, _ in losses] + [1.0])]

    def take_window(self) -> Dict[str, float]:
        """The window's mean losses per head ({"loss_A": ..., "loss_no_lamb_A": ..., ...}); starts a new
        window."""
        rec = {}
        for head, (l, ln, n) in sorted(self.window.items()):
            rec[f"loss_{head}"], rec[f"loss_no_lamb_{head}"] = l / n, ln / n
        self.window = {}
        return rec

    def take_subhead_losses(self, num_sub_heads: int) -> List[float]:
        """Mean training loss of each main-head sub-head since the last call (the label-free selection;
        the last known values when the main head was idle, zeros before any step of it)."""
        if self.subhead_sums:
            self.last_losses = [s / self.subhead_sums[-1] for s in self.subhead_sums[:-1]]
            self.selection = "lowest_loss"
        self.subhead_sums = []
        return self.last_losses or [0.0] * num_sub_heads


@dataclass
class TrainState:
    """Position, schedule and statistics of a run (see the classes above)."""

    position: Position = field(default_factory=Position)
    schedule: Schedule = field(default_factory=Schedule)
    stats: Stats = field(default_factory=Stats)

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        """{"position": {...}, "schedule": {...}, "stats": {...}} of plain Python values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Dict[str, Any]]) -> "TrainState":
        """Inverse of ``to_dict`` (other keys of ``values`` are ignored); a missing part or an unknown
        field raises ValueError naming it."""
        parts = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                raise ValueError(f"train state has no {f.name!r} part")
            kind = f.default_factory  # type: ignore[misc]
            try:
                parts[f.name] = kind(**values[f.name])
            except TypeError as error:
                raise ValueError(f"train state part {f.name!r}: {error}") from None
        return cls(**parts)
