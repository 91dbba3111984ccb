"""benchmarks/gpu_check.py cannot rot while no GPU is at hand: its --help states the plan and the expected time,
and its dry run (the same plan on the CPU at toy sizes) writes every part's JSON, with provenance, and a summary."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")
PARTS = ["env", "build", "tests_cpu", "tests_gpu", "memcheck", "racecheck", "bench_loss", "bench_memory", "train",
         "segment"]


def _run(args, timeout):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _part(out, name):
    with open(os.path.join(out, f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)


def test_help_states_the_plan_and_the_expected_time():
    out = _run(["--help"], 60)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for part in PARTS:
        assert f" {part} " in text
    for promise in ("n=75, k=24 and k=3, 200x200, d=10", "n=120, k=15, 128x128, d=10", "micro-batches 75 / 25 / 5",
                    "bf16 AMP", "Expected on an H200", "--dry-run"):
        assert promise in text


def test_unknown_part_is_a_usage_error(tmp_path):
    out = _run([str(tmp_path), "--parts", "env,nope"], 60)
    assert out.returncode == 2 and "unknown parts ['nope']" in out.stderr


def test_dry_run_of_the_quick_parts(tmp_path):
    out = _run([str(tmp_path), "--dry-run", "--parts", "env,build,tests_gpu,memcheck,racecheck"], 600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for name in ("env", "build", "tests_gpu", "memcheck", "racecheck"):
        part = _part(tmp_path, name)
        assert part["part"] == name and part["status"] in ("passed", "skipped", "unavailable")
        assert {"git_commit", "git_dirty", "torch", "cuda", "device_name"} <= set(part["meta"])
    assert _part(tmp_path, "build")["status"] == "skipped"
    assert _part(tmp_path, "env")["modules"]["numpy"]
    summary = json.load(open(tmp_path / "summary.json", encoding="utf-8"))
    assert [p["part"] for p in summary["parts"]] == ["env", "build", "tests_gpu", "memcheck", "racecheck"]
    assert "| tests_gpu | passed |" in out.stdout


@pytest.mark.slow
def test_full_dry_run(tmp_path):
    out = _run([str(tmp_path), "--dry-run"], 1300)
    assert out.returncode == 0, out.stdout[-4000:]
    for name in PARTS:
        assert _part(tmp_path, name)["status"] in ("passed", "skipped", "unavailable"), name
    assert _part(tmp_path, "tests_cpu")["totals"]["tests"] > 0
    assert _part(tmp_path, "train")["median_step_ms"] > 0
    for name in ("bench_loss", "bench_memory", "segment"):
        files = _part(tmp_path, name)["results"]
        assert files, name
        for path in files:
            report = json.load(open(tmp_path / path, encoding="utf-8"))
            assert report["meta"]["git_commit"] and report["results"], path
