"""A per-test timeout for pytest without the pytest-timeout package (absent on the device machines): loaded with
``-p _pytest_timeout`` (benchmarks/ on PYTHONPATH), it fails a test that runs longer than IIC_TEST_TIMEOUT
seconds. SIGALRM interrupts Python code only; a test stuck inside a CUDA call is caught by the caller's
per-file timeout, and pytest's ``faulthandler_timeout`` dumps where it hung."""
from __future__ import annotations

import os
import signal

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    seconds = int(os.environ.get("IIC_TEST_TIMEOUT", "0"))
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        pytest.fail(f"{item.nodeid} exceeded the per-test timeout of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
