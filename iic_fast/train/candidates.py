"""Several independent starts, the best one continued: IIC's answer to a bad start, as k-means' ``n_init``.

A run whose trunk settles early in a poor local optimum (two digits sharing a cluster) stays there: the
main head's sub-heads share the trunk's merge, so neither sub-head selection nor sub-head restarts undo it.
With ``candidates`` n > 1 a run first trains n candidates for ``candidate_steps`` steps each (to the first
evaluation at or past them; 0: the whole schedule, each in its share of ``max_minutes``), each a run of its own in
``RUN_DIR/candidates/<i>`` with its own initial weights and augmentations (seed ``seed + SEED_STRIDE * i``; the
data order is the run's); candidate 0 is the plain run of the seed. The candidate whose main head has the lowest
IIC loss in evaluation mode (``Evaluator.selection_losses``, no labels) then goes on to the end of the schedule in
``RUN_DIR``, exactly as a resume would continue it. Stopped at ``candidate_steps``, the candidates train without a
time plan; their time counts against ``max_minutes``, and the continuation's plan fits the rest of the run in what
is left. Whole-run candidates (``candidate_steps`` 0) each plan their schedule in their share of the budget, and
end with their final evaluation; the chosen one is then the run's result as it stands.

With ``candidate_jobs`` j > 1 the candidates train j at a time, each in a process of its own with 1/j of the
CPU threads (whole runs: a share of j/n of ``max_minutes``, 1/n with j = 1). On a small net a few threads each
use the cores better than all threads on one run (Digits: two 1-thread runs of 1500 steps take less time than
one 2-thread run did). A candidate's run is then the one of a single process with its threads.

A killed run resumes where it was: in the candidate it was training, or after the choice.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, List, Tuple

import torch

from . import checkpoint as ck
from .config import TrainConfig

#: candidate i trains from the seed ``seed + SEED_STRIDE * i`` (a prime, so runs of nearby seeds do not share one)
SEED_STRIDE = 7919

#: (config, run directory, resume, candidate index) -> a Trainer
MakeTrainer = Callable[[TrainConfig, str, bool, int], Any]


@dataclass
class Choice:
    """The candidate chosen (``index``, its run directory), every candidate's loss, and the seconds all
    candidates took together (their training, evaluations and scoring)."""

    index: int
    losses: List[float]
    seconds: float
    run_dir: str


def candidate_dir(out: str, index: int) -> str:
    """Run directory of candidate ``index`` of the run in ``out``."""
    return os.path.join(out, "candidates", str(index))


def train_candidates(run: Any, make: MakeTrainer) -> Choice:
    """Trains every candidate of the Trainer ``run`` up to its stop (resuming those a resumed run has
    begun), ``candidate_jobs`` at a time, scores each by the lowest evaluation-mode loss of its main head's
    sub-heads, and returns the choice (the lowest; ties: the first). ``make`` must be picklable when
    ``candidate_jobs`` > 1."""
    config, out = run.config, run.out
    jobs = config.candidate_jobs
    share = config.max_minutes / (config.candidates // jobs) if config.candidate_steps == 0 else 0.0  # per round
    child = TrainConfig.from_dict({**config.to_dict(), "candidates": 1, "candidate_jobs": 1, "max_minutes": share})
    tasks = []
    for i in range(config.candidates):
        begun = run.resumed and os.path.exists(os.path.join(candidate_dir(out, i), "latest.pt"))
        desc = f"{config.preset} candidate {i + 1}/{config.candidates}"
        tasks.append((make, child, candidate_dir(out, i), begun, i, desc, i % jobs))
    rounds = [tasks[k:k + jobs] for k in range(0, len(tasks), jobs)]  # the candidates of a round train at once
    if jobs == 1:
        done = [[train_candidate(*task) for task in batch] for batch in rounds]
    else:
        threads = max(1, torch.get_num_threads() // jobs)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_worker_init, initargs=(threads, os.getpid())) as pool:
            done = [list(pool.map(train_candidate, *zip(*batch))) for batch in rounds]
    losses = [loss for batch in done for loss, _ in batch]
    seconds = sum(max(sec for _, sec in batch) for batch in done)
    best = min(range(len(losses)), key=lambda i: (losses[i], i))
    return Choice(best, losses, seconds, candidate_dir(out, best))


def train_candidate(make: MakeTrainer, config: TrainConfig, run_dir: str, resume: bool, index: int, desc: str,
                    position: int = 0) -> Tuple[float, float]:
    """Trains candidate ``index`` (``config``: the child's) to its stop and returns (the lowest evaluation-mode
    loss of its main head's sub-heads, its seconds); ``position``: the line of its progress bar."""
    whole = config.candidate_steps == 0
    trainer = make(config, run_dir, resume, index)
    trainer.train_until(None if whole else config.candidate_steps, desc=desc, position=position)
    if whole:
        trainer.evaluate_final()
    st = trainer.state.stats  # a final evaluation with selection_passes has scored the sub-heads already
    passes = max(1, config.selection_passes)
    scores = st.last_losses if whole and config.selection_passes else trainer.evaluator.selection_losses(passes)
    return min(scores), trainer.elapsed()


def _worker_init(threads: int, run_pid: int) -> None:
    """A candidate process: its share of the threads, and on Linux it dies with the run's process ``run_pid`` (a
    killed run must not leave a candidate writing into the directory that its resume trains in)."""
    torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != run_pid:  # the run died before prctl took effect
            os._exit(1)


def continue_best(trainer: Any, choice: Choice) -> None:
    """``trainer`` (the run's own) takes over the chosen candidate: its checkpoint (the time: all the
    candidates'), metrics log and best checkpoint, saved in the run's directory so that a resume goes on from
    there."""
    ckpt = ck.load(os.path.join(choice.run_dir, "latest.pt"), map_location=trainer.device)
    ckpt["stats"].update(seconds=choice.seconds, candidate=choice.index, candidate_losses=choice.losses)
    if trainer.main:
        shutil.copyfile(os.path.join(choice.run_dir, "metrics.jsonl"), trainer.log.path)
    trainer.restore(ckpt)
    if trainer.main:
        best = ck.load(os.path.join(choice.run_dir, "best.pt"), map_location=trainer.device)
        ck.save_atomic({**best, "config": trainer.config.to_dict()}, os.path.join(trainer.out, "best.pt"))
        ck.save_atomic(trainer.checkpoint(), os.path.join(trainer.out, "latest.pt"))
