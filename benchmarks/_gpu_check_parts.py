"""The parts of benchmarks/gpu_check.py and the runner that times, isolates and records them (see its --help)."""
from __future__ import annotations

import glob
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
OK = ("passed", "skipped", "unavailable")  # statuses that do not fail the run


class Part:
    """One part's context: its name, output folder, device and a way to run commands into its logs."""

    def __init__(self, runner: "Runner", name: str) -> None:
        self.runner, self.name, self.root, self.device = runner, name, runner.root, runner.device

    def skip(self, why: str) -> dict:
        return {"status": "skipped", "summary": why}

    def unavailable(self, why: str) -> dict:
        return {"status": "unavailable", "summary": why}

    def command(self, cmd: List[str], budget: float, env: Optional[dict] = None, log: Optional[str] = None,
                poll: Optional[Callable[[], None]] = None) -> dict:
        """Runs cmd in the checkout for at most ``budget`` seconds (then kills its process group); stdout and
        stderr go to logs/<log or part>.log. Returns status passed / failed / timeout, returncode, log, tail."""
        path = os.path.join(self.runner.out, "logs", f"{log or self.name}.log")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        start = time.monotonic()
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"$ {' '.join(cmd)}\n")
            f.flush()
            proc = subprocess.Popen(cmd, cwd=self.root, env={**self.runner.env, **(env or {})}, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            rc = _wait(proc, budget, poll)
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        status = "timeout" if rc is None else "passed" if rc == 0 else "failed"
        return {"status": status, "returncode": rc, "command": cmd, "log": os.path.relpath(path, self.runner.out),
                "seconds": round(time.monotonic() - start, 1), "tail": text[-3000:], "_text": text}


def _wait(proc: subprocess.Popen, budget: float, poll: Optional[Callable[[], None]]) -> Optional[int]:
    """The return code, or None after killing the process group at the budget."""
    end = time.monotonic() + budget
    while time.monotonic() < end:
        try:
            return proc.wait(timeout=0.02 if poll else max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            if poll:
                poll()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return None


class Runner:
    """Runs parts within their budgets and the run's deadline, writes <out>/<part>.json and the summary."""

    def __init__(self, out: str, root: str, device: str, deadline: float, budgets: dict) -> None:
        self.out, self.root, self.device, self.deadline, self.budgets = out, root, device, deadline, budgets
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, HERE,
                                                                              os.environ.get("PYTHONPATH")]))}
        self.results: List[dict] = []
        self._lock, self._meta = threading.Lock(), None
        os.makedirs(out, exist_ok=True)

    def meta(self, refresh: bool = False) -> dict:
        """benchmarks/_meta.py metadata, taken in a fresh process (so that it sees the extension just built)."""
        if self._meta is None or refresh:
            code = f"import json; from _meta import metadata; print(json.dumps(metadata({self.device!r})))"
            out = subprocess.run([sys.executable, "-c", code], cwd=self.root, env=self.env, capture_output=True,
                                 text=True, timeout=120)
            self._meta = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {
                "error": out.stderr[-2000:]}
        return self._meta

    def run(self, name: str, fn: Callable[[Part, float], dict]) -> dict:
        start = time.monotonic()
        budget = min(self.budgets[name], self.deadline - start)
        if budget <= 1:
            result = {"status": "skipped", "summary": f"no time left (budget {self.budgets[name]} s)"}
        else:
            print(f"gpu_check: {name} (at most {budget:.0f} s)", flush=True)
            try:
                result = fn(Part(self, name), budget)
            except Exception as error:  # a broken part is recorded; the others still run
                result = {"status": "failed", "summary": f"{type(error).__name__}: {error}"}
        result = {"part": name, **{k: v for k, v in result.items() if not k.startswith("_")},
                  "seconds": round(time.monotonic() - start, 1)}
        result.setdefault("summary", result["status"] if "returncode" not in result else
                          f"{result['status']} (exit {result['returncode']}, {result['log']})")
        record = {"meta": self.meta(refresh=name == "build"), **result}
        with open(os.path.join(self.out, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
        with self._lock:
            self.results.append(result)
        print(f"gpu_check: {name}: {result['status']} in {result['seconds']} s: {result['summary']}", flush=True)
        return result

    def start_background(self, name: str, fn: Callable[[Part, float], dict]) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(name, fn), daemon=True)
        thread.start()
        return thread

    def finish(self) -> int:
        rows = sorted(self.results, key=lambda r: list(self.budgets).index(r["part"]))
        lines = ["| part | status | seconds | result |", "|---|---|---:|---|"]
        lines += [f"| {r['part']} | {r['status']} | {r['seconds']} | {r['summary']} |" for r in rows]
        print("\n".join(lines))
        with open(os.path.join(self.out, "summary.json"), "w", encoding="utf-8") as f:
            json.dump({"meta": self.meta(), "parts": rows, "table": lines}, f, indent=1)
        return 0 if all(r["status"] in OK for r in rows) else 1


def env_part(part: Part, budget: float) -> dict:
    """Versions, GPU, and which dependencies and tools exist (nothing is installed)."""
    import torch

    modules = ["numpy", "scipy", "tqdm", "PIL", "skimage", "sklearn", "matplotlib", "pytest", "ninja", "pybind11"]
    cuda = torch.cuda.is_available()
    info = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "capability": list(torch.cuda.get_device_capability(0)) if cuda else None,
            "cpu_count": os.cpu_count(), "nvcc": _tool("nvcc"), "compute_sanitizer": _tool("compute-sanitizer"),
            "modules": {m: importlib.util.find_spec(m) is not None for m in modules}}
    missing = [m for m, ok in info["modules"].items() if not ok]
    return {"status": "passed", "summary": f"{info['gpu'] or 'no GPU'}, torch {info['torch']}, CUDA "
            f"{info['torch_cuda']}; missing: {', '.join(missing) or 'none'}", **info}


def _tool(name: str) -> Optional[str]:
    """The path of a CUDA tool on PATH or in the toolkit (CUDA_HOME, /usr/local/cuda), or None."""
    homes = [os.environ.get("CUDA_HOME"), "/usr/local/cuda"]
    candidates = [shutil.which(name)] + [os.path.join(h, "bin", name) for h in homes if h]
    return next((c for c in candidates if c and os.path.isfile(c)), None)


def tests_part(part: Part, budget: float, test_timeout: int, selection: List[str], gpu: bool,
               parallel: int = 1, pattern: str = "test_*.py") -> dict:
    """pytest file by file (a crash or hang loses one file) over python_tests/<pattern>: with CUDA hidden, or
    only the tests marked cuda; ``selection`` is passed on (e.g. -k EXPR)."""
    files = sorted(glob.glob(os.path.join(part.root, "python_tests", pattern)))
    if gpu:  # only files that hold GPU tests
        files = [f for f in files if "pytest.mark.cuda" in open(f, encoding="utf-8").read()]
    env = {"IIC_TEST_TIMEOUT": str(test_timeout)}
    if not gpu:  # half the cores, so that the GPU parts running alongside keep theirs
        threads = str(max(1, (os.cpu_count() or 2) // (2 * parallel)))
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=threads)
    end = time.monotonic() + budget

    def one(path: str) -> dict:
        stem = os.path.splitext(os.path.basename(path))[0]
        junit = os.path.join(part.runner.out, "junit", f"{part.name}_{stem}.xml")
        cmd = [sys.executable, "-m", "pytest", path, "-q", "-p", "_pytest_timeout", "-p", "no:cacheprovider",
               "-o", f"faulthandler_timeout={test_timeout + 15}", f"--junitxml={junit}",
               *(["-m", "cuda"] if gpu else []), *selection]
        res = part.command(cmd, max(1.0, end - time.monotonic()), env=env, log=f"{part.name}_{stem}")
        if res["returncode"] == 5:  # no test selected in this file
            res["status"] = "passed"
        return {"file": stem, "status": res["status"], "returncode": res["returncode"], "log": res["log"],
                "seconds": res["seconds"], **_junit(junit)}

    with ThreadPoolExecutor(parallel) as pool:
        files_out = list(pool.map(one, files))
    totals = {k: sum(f.get(k, 0) for f in files_out) for k in ("tests", "failures", "errors", "skipped")}
    statuses = {f["status"] for f in files_out}
    status = "timeout" if "timeout" in statuses else "failed" if statuses - {"passed"} else "passed"
    summary = (f"{totals['tests'] - totals['failures'] - totals['errors'] - totals['skipped']} passed, "
               f"{totals['failures'] + totals['errors']} failed, {totals['skipped']} skipped in {len(files)} files"
               + "".join(f"; {f['file']}: {f['status']}" for f in files_out if f["status"] != "passed"))
    return {"status": status, "summary": summary, "totals": totals, "files": files_out}


def _junit(path: str) -> dict:
    """Counts and failing tests of a pytest junit XML file ({} when pytest died before writing it)."""
    if not os.path.exists(path):
        return {}
    suite = ET.parse(path).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    failed = [f"{case.get('classname')}::{case.get('name')}: {(bad.get('message') or '').splitlines()[0][:200]}"
              for case in suite.iter("testcase") for bad in list(case) if bad.tag in ("failure", "error")]
    return {**{k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}, "failed": failed}


def sanitizer_part(part: Part, budget: float, tool: str, selection: List[str]) -> dict:
    """compute-sanitizer --tool memcheck|racecheck on a small pytest selection."""
    exe = _tool("compute-sanitizer")
    if exe is None:
        return part.unavailable("compute-sanitizer not found (PATH, CUDA_HOME, /usr/local/cuda)")
    cmd = [exe, "--tool", tool, "--error-exitcode", "86", "--print-limit", "20", sys.executable, "-m", "pytest",
           *selection, "-q", "-p", "no:cacheprovider"]
    res = part.command(cmd, budget)
    text = res["_text"]
    reports = [line.strip() for line in text.splitlines() if "SUMMARY" in line and "=====" in line]
    if "device not supported" in text.lower():
        res.update(status="unavailable", summary="Device not supported (compute-sanitizer refused this GPU)")
    elif res["returncode"] == 86:
        res.update(status="failed", summary=f"{tool} reported errors: {'; '.join(reports)}")
    else:
        res["summary"] = f"{res['status']} (exit {res['returncode']}): {'; '.join(reports) or 'no summary line'}"
    return {**res, "reports": reports}


def bench_part(part: Part, budget: float, cmd: List[str], bench_out: str) -> dict:
    """One benchmark script; records the results JSON it wrote (under OUT/bench)."""
    before = set(glob.glob(os.path.join(bench_out, "*.json")))
    res = part.command(cmd, budget)
    written = sorted(set(glob.glob(os.path.join(bench_out, "*.json"))) - before)
    res["results"] = [os.path.relpath(p, part.runner.out) for p in written]
    if res["status"] == "passed":
        res["summary"] = f"wrote {', '.join(res['results']) or 'nothing'}"
    return res


def write_potsdam_fixture(root: str, side: int, counts: dict) -> None:
    """Synthetic files in the Potsdam release layout: imgs/<id>.mat (side x side x 4 uint8, key "img"),
    gt/<id>.mat (labels 0-5, key "gt") for the labelled lists, and the three list files."""
    import numpy as np
    import scipy.io

    rng, next_id = np.random.default_rng(0), 0
    for sub in ("imgs", "gt"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for name, count in counts.items():
        ids = list(range(next_id, next_id + count))
        next_id += count
        with open(os.path.join(root, f"{name}.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"{i}\n" for i in ids)
        for i in ids:
            img = rng.integers(0, 256, (side, side, 4), dtype=np.uint8)
            scipy.io.savemat(os.path.join(root, "imgs", f"{i}.mat"), {"img": img})
            if name != "unlabelled_train":
                scipy.io.savemat(os.path.join(root, "gt", f"{i}.mat"), {"gt": (img[:, :, 0] % 6).astype(np.int32)})


def train_part(part: Part, budget: float, dry: bool) -> dict:
    """potsdam3 on synthetic release files (bf16 AMP on the GPU); the median step time from the times at which
    the per-step train records reach metrics.jsonl (after 5 warm-up steps)."""
    steps = 4 if dry else 20
    with tempfile.TemporaryDirectory(prefix="iic_gpu_check_") as tmp:
        data, run = os.path.join(tmp, "potsdam"), os.path.join(tmp, "run")
        counts = {"unlabelled_train": 8, "labelled_train": 4, "labelled_test": 4} if dry else {
            "unlabelled_train": 80, "labelled_train": 20, "labelled_test": 10}
        write_potsdam_fixture(data, 24 if dry else 200, counts)
        toy = ["--device", "cpu", "--batch-size", "4", "--set", "input_size=16", "--set", "amp=off"]
        cmd = [sys.executable, "-m", "iic_fast.cli", "train", "--preset", "potsdam3", "--data-root", data,
               "--out", run, "--max-steps", str(steps), "--no-progress", "--set", "log_every=1",
               *(toy if dry else ["--device", "cuda", "--set", "amp=bf16"])]
        arrivals = {}

        def poll() -> None:
            for rec in _records(os.path.join(run, "metrics.jsonl")):
                if rec.get("kind") == "train":
                    arrivals.setdefault(rec["step"], time.monotonic())

        res = part.command(cmd, budget, poll=poll)
        poll()
        summary = _records(os.path.join(run, "summary.json"))
    times = sorted(arrivals.items())
    gaps = [(t1 - t0) * 1e3 for (_, t0), (_, t1) in zip(times, times[1:])][min(5, steps // 2):]
    res["step_ms"] = [round(g, 2) for g in gaps]
    res["median_step_ms"] = round(statistics.median(gaps), 2) if gaps else None
    res["run_summary"] = summary[0] if summary else None
    if res["status"] == "passed":
        res["summary"] = f"median step {res['median_step_ms']} ms over {len(gaps)} steps"
    return res


def _records(path: str) -> List[dict]:
    """The JSON records of a .jsonl file (or the one object of a .json file) written so far."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    if path.endswith(".json"):
        return [json.loads(text)] if text.strip() else []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # the line being written
            pass
    return records
