"""GPU readiness in one command: build, every test, compute-sanitizer, the GPU benchmarks, a training smoke run.

    python3 benchmarks/gpu_check.py OUT_DIR              # a CUDA machine, fresh checkout: at most ~8 minutes
    python3 benchmarks/gpu_check.py OUT_DIR --dry-run    # the same plan on the CPU at toy sizes (1-5 minutes)

Plan (part: what it runs; its time budget in seconds, full run / dry run):
  env        Python, torch, CUDA, GPU; which dependencies and tools (nvcc, compute-sanitizer) exist      10 / 30
  build      python setup.py build_ext --inplace: no network, no build isolation, MAX_JOBS = cores      300 / 10
             (skipped in the dry run, which uses the extension already built)
  tests_cpu  every python_tests file (slow ones too) with CUDA hidden, files in parallel on half the
             cores (started after the build, alongside the GPU parts), each test at most --test-timeout s 420 / 120
  tests_gpu  the tests marked `cuda`, one process per file (a crash loses one file), same timeout       150 / 120
             (dry run: a few tests of test_kernels.py)
  memcheck   compute-sanitizer --tool memcheck on the sanitizer selection: test_cuda_kernels.py -k small
             (each CUDA kernel once, every dtype) and test_kernels.py's CUDA argument-error and empty-batch
             tests                                                                                      150 / 30
  racecheck  compute-sanitizer --tool racecheck on the same selection, alongside memcheck                150 / 30
  bench_loss    bench_loss.py --device cuda: paper scale (n=75, k=24 and k=3, 200x200, d=10) and COCO
                scale (n=120, k=15, 128x128, d=10), every impl against the conv trick                  180 / 240
  bench_memory  bench_memory.py --device cuda: batch 75 at 200x200, micro-batches 75 / 25 / 5, BatchNorm
                in eval mode, gradient difference to the full batch measured                           100 / 180
  train      iic-fast train --preset potsdam3, 20 steps, bf16 AMP, on synthetic release-format .mat
             files (110 patches of 200x200x4); median step time from the metrics log's arrival times   120 / 180
             (the fixture holds about one batch per epoch: the step time includes the loader's epoch turns)
  segment    bench_segment.py --device cuda --amp (segment throughput)                                   60 / 120
The whole run has a deadline (--deadline: default 470 s; 1200 s for the dry run, whose budgets are generous
for loaded CI machines): a part gets at most the time left, and one with no time left is recorded as skipped.
Expected on an H200 (estimated, not yet measured): build 2-3 min, then the GPU parts about 4-5 min; the CPU
tests finish alongside.

Every part writes OUT_DIR/<part>.json: {"meta": benchmarks/_meta.py metadata (git commit and dirty flag, GPU
name, torch and CUDA versions, build info), "part", "status", "seconds", "command", "log", details}. The
benchmark scripts write their own JSON under OUT_DIR/bench (the files benchmarks/readme_tables.py reads).
A part that fails, times out or is unavailable (compute-sanitizer's "Device not supported") is recorded and
the rest still run. At the end: a summary table on stdout and OUT_DIR/summary.json. Exit status 0 when no
part failed or timed out, 1 otherwise.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _gpu_check_parts import Runner, bench_part, env_part, sanitizer_part, tests_part, train_part  # noqa: E402

# Small, quick tests that reach every CUDA kernel once, and the argument checks (the device-only crash).
SANITIZER_SELECTION = ["python_tests/test_cuda_kernels.py", "python_tests/test_kernels.py", "-k",
                       "small or (cuda and (bad_arguments or empty_batch))"]
DRY_TESTS = ("test_kernels.py", ["-k", "empty_batch or bad_arguments_name"])  # the test parts at toy size
BUDGETS = {  # part: (full run, dry run) seconds
    "env": (10, 30), "build": (300, 10), "tests_cpu": (420, 120), "tests_gpu": (150, 120), "memcheck": (150, 30),
    "racecheck": (150, 30), "bench_loss": (180, 240), "bench_memory": (100, 180), "train": (120, 180),
    "segment": (60, 120),
}


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", metavar="OUT_DIR", help="folder for every part's JSON and log (created)")
    p.add_argument("--dry-run", action="store_true", help="the same plan on the CPU at toy sizes, no build")
    p.add_argument("--deadline", type=float, default=None, help="seconds for the whole run (default 470; dry run "
                   "1200)")
    p.add_argument("--test-timeout", type=int, default=120, help="seconds per test (default 120)")
    p.add_argument("--parts", default=",".join(BUDGETS), help="comma-separated subset of the plan's parts")
    return p.parse_args(argv)


def _bench_commands(dry: bool, out: str) -> dict:
    device = ["--device", "cpu", "--quick"] if dry else ["--device", "cuda"]
    script = lambda name: [sys.executable, os.path.join(HERE, name), "--out", out, *device]  # noqa: E731
    return {"bench_loss": script("bench_loss.py") + ([] if dry else ["--ref-repeats", "1"]),
            "bench_memory": script("bench_memory.py"),
            "segment": script("bench_segment.py") + ([] if dry else ["--amp"])}


def main(argv=None) -> int:
    args = _parse(argv)
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(BUDGETS))
    if unknown:
        print(f"gpu_check: unknown parts {unknown}; the plan: {', '.join(BUDGETS)}", file=sys.stderr)
        return 2
    dry, bench_out = args.dry_run, os.path.join(os.path.abspath(args.out), "bench")
    deadline = args.deadline or (1200 if dry else 470)
    runner = Runner(os.path.abspath(args.out), ROOT, "cpu" if dry else "cuda", time.monotonic() + deadline,
                    {name: budget[dry] for name, budget in BUDGETS.items()})
    pattern, selection = DRY_TESTS if dry else ("test_*.py", [])
    want = lambda name: name in parts  # noqa: E731
    if want("env"):
        runner.run("env", env_part)
    if want("build"):
        runner.run("build", lambda r, budget: (r.skip("dry run: uses the extension already built") if dry else
                                               r.command([sys.executable, "setup.py", "build_ext", "--inplace"],
                                                         budget, env={"MAX_JOBS": str(os.cpu_count() or 2)})))
    cpu_tests = runner.start_background("tests_cpu", lambda r, budget: tests_part(
        r, budget, args.test_timeout, selection, gpu=False, parallel=max(1, (os.cpu_count() or 2) // 8),
        pattern=pattern)
    ) if want("tests_cpu") else None
    if want("tests_gpu"):
        runner.run("tests_gpu", lambda r, budget: tests_part(r, budget, args.test_timeout, selection, gpu=True,
                                                             pattern=pattern))
    sanitizers = [runner.start_background(tool, lambda r, budget, t=tool: sanitizer_part(
        r, budget, t, SANITIZER_SELECTION)) for tool in ("memcheck", "racecheck") if want(tool)]
    for thread in sanitizers:
        thread.join()
    benches = _bench_commands(dry, bench_out)
    for name in ("bench_loss", "bench_memory"):
        if want(name):
            runner.run(name, lambda r, budget, n=name: bench_part(r, budget, benches[n], bench_out))
    if want("train"):
        runner.run("train", lambda r, budget: train_part(r, budget, dry))
    if want("segment"):
        segment = os.path.exists(os.path.join(HERE, "bench_segment.py"))
        runner.run("segment", lambda r, budget: bench_part(r, budget, benches["segment"], bench_out) if segment
                   else r.skip("benchmarks/bench_segment.py does not exist"))
    if cpu_tests is not None:
        cpu_tests.join()
    return runner.finish()


if __name__ == "__main__":
    sys.exit(main())
