"""What every benchmark's results JSON records about the run, and where the JSON goes.

Every bench script adds the same three options (``--out``, ``--quick``, ``--device``) with
:func:`add_common_args` and writes ``{"meta": metadata(...), **payload}`` with :func:`write_results`.
A user's run writes into the current folder (or ``--out``); only deliberate README runs pass
``--out benchmarks/results``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
# the instruction-set extensions that decide which CPU code paths are fast, widest last
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile")


def add_common_args(parser: argparse.ArgumentParser, quick_help: str) -> None:
    """Adds ``--out DIR`` (default: the current folder), ``--quick`` and ``--device``."""
    parser.add_argument("--out", default=".", metavar="DIR",
                        help="folder for the results JSON (default: the current folder; README runs pass "
                        "benchmarks/results)")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _cpuinfo() -> tuple[str, list[str]]:
    """CPU model name and the ISA extensions of ``ISA_FLAGS`` it has (Linux /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return model, []
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    found_flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    if found:
        model = found.group(1).strip()
    if found_flags:
        flags = set(found_flags.group(1).split())
    return model, [f for f in ISA_FLAGS if f in flags]


def sync(device: str) -> None:
    """Waits for the device's queued work (a no-op on the CPU), so that wall-clock times are honest."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def device_name(device: str) -> str:
    """The GPU's name for a CUDA device, else the CPU model."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return _cpuinfo()[0]


def device_slug(device: str) -> str:
    """File-name form of the device: ``cpu<cores>`` or ``cuda-<GPU name>``."""
    if torch.device(device).type == "cuda":
        return "cuda-" + re.sub(r"[^A-Za-z0-9]+", "-", device_name(device)).strip("-")
    return f"cpu{os.cpu_count()}"


def metadata(device: str) -> dict:
    """The run's provenance (call it when the run starts): git commit and the tracked files that differ
    from it, hardware, software, threads, load average, date, command line."""
    import iic_fast

    model, isa = _cpuinfo()
    dirty = _git("diff", "--name-only", "HEAD").splitlines()  # tracked files that differ from the commit
    meta = {"git_commit": _git("rev-parse", "HEAD") or "unknown", "git_dirty": bool(dirty),
            "git_dirty_files": dirty[:50],
            "device": device, "device_name": device_name(device), "cpu_model": model, "cpu_isa": isa,
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "build": iic_fast.build_info(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": shlex.join([os.path.basename(sys.executable), *sys.argv]),
            "loadavg_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if torch.device(device).type == "cuda":
        meta["gpu_name"] = device_name(device)
    return meta


def write_results(out_dir: str, bench: str, device: str, payload: dict, meta: dict | None = None) -> str:
    """Writes ``<out_dir>/<date>_<device slug>_<bench>.json``: ``meta`` (best taken with :func:`metadata`
    when the run started; default: now) plus the load average at the end, and ``payload``; returns the path."""
    meta = meta or metadata(device)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{meta['date'][:10]}_{device_slug(device)}_{bench}.json")
    meta = {**meta, "loadavg_1_5_15_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"meta": meta, **payload}, f, indent=1)
        f.write("\n")
    print(f"wrote {path}", flush=True)
    return path
