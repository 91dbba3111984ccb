"""The training schedule: which head trains at each step, how many steps the run has, the learning rate
along them, and how a time budget fixes the run's length.

A run's length is its **schedule steps**: the smaller of ``max_steps`` and the steps of ``max_epochs``,
known before training. With ``max_minutes`` the trainer also measures its pace (wall seconds per step)
over ``Pace.window`` steps early in the run and shortens the schedule to the steps that fit the rest of
the budget with a margin (``fit_steps``). After every evaluation it plans again with the pace since the
window's start (``Pace.since_start``: the start-up steps left out, evaluations in), keeping the last
evaluation's time in reserve for the final one; such a re-plan shortens or lengthens the schedule (never
past the horizon), so a pace measured on slow early steps (the head-A warm-up's) is corrected once the
faster steps come. While the head-A warm-up runs, every plan sets its length in proportion
(``warmup_epochs``), so a slow machine still trains the main head and a pace spoiled by a moment of load
early on is corrected by the next plans; once the warm-up is over it stays where it ended
(``Schedule.warmup_end``). The cosine learning rate is laid
over the schedule steps, so a run cut short by a slow machine still ends at lr 0 instead of being
stopped mid-schedule; a preset that fits its steps in its budget runs the same steps on any machine
fast enough, so its result does not depend on the machine's speed.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional

from .config import TrainConfig
from .state import Position, Schedule

PassSteps = Callable[[str], int]  # head -> steps of one pass of that head

#: fraction of the remaining time budget a plan fills (evaluations and pace changes take the rest)
MARGIN = 0.9


def warmup_epochs(config: TrainConfig, sched: Optional[Schedule] = None) -> int:
    """Epochs of head A alone: ``sched.warmup_end`` once the warm-up is over, before that
    ``head_A_warmup_epochs`` scaled by the latest plan's ``steps / horizon`` (rounded up) when a time
    budget made ``sched`` shorter than its horizon."""
    w = config.head_A_warmup_epochs
    if sched is None:
        return w
    if sched.warmup_end:
        return sched.warmup_end
    if sched.horizon and sched.steps < sched.horizon:
        return math.ceil(w * sched.steps / sched.horizon)
    return w


def phases(config: TrainConfig, epoch: int, sched: Optional[Schedule] = None) -> List[str]:
    """Heads trained in ``epoch``, one pass each (see ``config.head_schedule``); ``sched`` shortens the
    warm-up (``warmup_epochs``)."""
    if config.head_schedule == "single":
        return ["B"]
    if epoch < warmup_epochs(config, sched):
        return ["A"]
    if config.head_schedule == "alternate":
        return ["A" if epoch % 2 == 0 else "B"]
    a, b = ["A"] * config.head_A_epochs, ["B"] * config.head_B_epochs
    return a + b if config.head_schedule == "A_then_B" else b + a


def head(config: TrainConfig, pos: Position, sched: Optional[Schedule] = None) -> str:
    """The head that trains the step at ``pos``."""
    return phases(config, pos.epoch, sched)[pos.phase]  # a shortened warm-up only adds passes to an epoch


def advance(config: TrainConfig, pos: Position, pass_steps: PassSteps, sched: Optional[Schedule] = None) -> bool:
    """Moves ``pos`` past one step of its pass (``pos.step`` is counted by the caller); True when the
    step ended an epoch."""
    if sched is not None and not sched.warmup_end:
        warmup = warmup_epochs(config, sched)
        if pos.epoch >= warmup:
            sched.warmup_end = warmup  # over: later plans leave it where it ended
    heads = phases(config, pos.epoch, sched)
    pos.phase_step += 1
    if pos.phase_step < pass_steps(heads[pos.phase]):
        return False
    pos.phase, pos.phase_step = pos.phase + 1, 0
    if pos.phase < len(heads):
        return False
    pos.epoch, pos.phase = pos.epoch + 1, 0
    return True


def horizon(config: TrainConfig, pass_steps: PassSteps) -> int:
    """Schedule steps known before training: the smaller of ``max_steps`` and the steps of
    ``max_epochs`` (0: neither is set). ValueError when a cosine schedule has no horizon at all."""
    limits = [config.max_steps] if config.max_steps else []
    if config.max_epochs:
        limits.append(sum(pass_steps(h) for e in range(config.max_epochs) for h in phases(config, e)))
    if config.lr_schedule == "cosine" and not (limits or config.max_minutes):
        raise ValueError("lr_schedule 'cosine' needs a length: set max_steps, max_epochs or max_minutes")
    return min(limits) if limits else 0


def lr_factor(config: TrainConfig, step: int, steps: int) -> float:
    """Learning-rate multiplier at ``step`` of a ``steps``-step schedule (cosine to 0; constant 1, and
    1 while a time-budget schedule has no length yet)."""
    if config.lr_schedule == "cosine" and steps:
        return 0.5 * (1.0 + math.cos(math.pi * min(step / steps, 1.0)))
    return 1.0


def restarts_passed(config: TrainConfig, step: int, sched: Schedule) -> int:
    """How many ``subhead_restarts`` fractions of ``sched.restart_steps`` lie at or before ``step`` (0
    without a schedule length, and at the schedule's end, where a restart would be wasted)."""
    if not sched.steps or step >= sched.steps:
        return 0
    return sum(step >= f * sched.restart_steps for f in config.subhead_restarts)


def fit_steps(step: int, seconds: float, pace: float, budget_seconds: float, margin: float = MARGIN,
              reserve: float = 0.0) -> int:
    """The run's length in steps when, at ``step`` after ``seconds`` of its ``budget_seconds``, it goes
    on at ``pace`` seconds per step through ``margin`` of the time left after ``reserve`` seconds (the
    final evaluation's); at least ``step`` + 1."""
    if pace <= 0:
        raise ValueError(f"pace must be > 0 seconds per step, got {pace}")
    left = max(0.0, budget_seconds - seconds - reserve)
    return step + max(1, math.floor(margin * left / pace))


class Pace:
    """Wall seconds per step over ``window`` steps of one session, after ``skip`` warm-up steps (the
    first steps pay for allocations); ``update`` returns the pace once, at the window's last step."""

    def __init__(self, first_step: int, skip: int = 5, window: int = 40) -> None:
        self.start, self.end = first_step + skip, first_step + skip + window
        self._start_seconds: Optional[float] = None

    def update(self, step: int, seconds: float) -> Optional[float]:
        """Call after every step with the step count and the elapsed seconds."""
        if step == self.start:
            self._start_seconds = seconds
        elif step == self.end:
            return self.since_start(step, seconds)
        return None

    def since_start(self, step: int, seconds: float) -> Optional[float]:
        """Seconds per step from the window's start to ``step`` (the warm-up steps left out, later
        evaluations in); None before the start."""
        if self._start_seconds is None or step <= self.start:
            return None
        return (seconds - self._start_seconds) / (step - self.start)


class TimePlan:
    """The time budget's plans of ``sched`` (see the module docstring): the first at the end of the pace
    window, then one after every evaluation. ``agree`` makes every rank plan the same length (the
    smallest; identity on one process)."""

    def __init__(self, budget_seconds: float, sched: Schedule, first_step: int,
                 agree: Callable[[int], int] = lambda n: n) -> None:
        self.budget_seconds, self.sched, self.agree = budget_seconds, sched, agree
        self.pace = Pace(first_step)

    def after_step(self, step: int, seconds: float) -> bool:
        """The first plan, once the pace window is over (a resumed run keeps its plan); True when the
        schedule's length changed."""
        pace = self.pace.update(step, seconds)
        return pace is not None and not self.sched.time_steps and self._plan(step, seconds, pace, 0.0)

    def after_evaluation(self, step: int, seconds: float, eval_seconds: float) -> bool:
        """A re-plan with the pace since the window's start, ``eval_seconds`` in reserve for the final
        evaluation; True when the schedule's length changed."""
        pace = self.pace.since_start(step, seconds)
        return pace is not None and bool(self.sched.time_steps) and self._plan(step, seconds, pace, eval_seconds)

    def _plan(self, step: int, seconds: float, pace: float, reserve: float) -> bool:
        fit = self.agree(fit_steps(step, seconds, pace, self.budget_seconds, reserve=reserve))
        before = self.sched.steps
        self.sched.time_steps = fit
        self.sched.longest_plan = max(self.sched.longest_plan, fit)
        return self.sched.steps != before
