"""CPU-specific cases of the kernels (the properties every device must have are in test_kernels.py): results
independent of the thread count, and every instruction-set build, with build_info() naming the one that ran."""
import os
import subprocess
import sys

import pytest
import torch

import iic_fast as iic
from oracle import random_maps

_C = pytest.importorskip("iic_fast._C", reason="iic_fast._C is not built")
ops = torch.ops.iic_fast


def test_deterministic_for_any_thread_count():
    x1, x2 = random_maps(3, 6, 33, 29, dtype=torch.float32)
    G = torch.randn(49, 6, 6)
    threads = torch.get_num_threads()
    results = []
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            results.append([ops.joint(x1, x2, 3, False), ops.joint(x1, x2, 3, True),
                            *ops.joint_backward(G, x1, x2, 3, False), *ops.joint_backward(G[0], x1, x2, 3, True),
                            *ops.mi(G.abs(), 1.3, False)])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


SCRIPT = """
import sys, torch, iic_fast
from oracle import assert_rel, brute_grads, brute_joint, random_maps
print(iic_fast.build_info()["cpu_isa"])
ops = torch.ops.iic_fast
for (n, k, H, W, d) in [(2, 7, 19, 37, 4), (1, 13, 9, 11, 2), (2, 3, 4, 6, 5)]:
    for dt, tol in [(torch.float64, 1e-10), (torch.float32, 1e-5)]:
        x1, x2 = random_maps(n, k, H, W, dtype=dt)
        for collapsed in (False, True):
            truth = brute_joint(x1, x2, d, collapsed=collapsed)
            assert_rel(ops.joint(x1, x2, d, collapsed), truth, tol)
            G = torch.randn(truth.shape, dtype=dt)
            for got, want in zip(ops.joint_backward(G, x1, x2, d, collapsed), brute_grads(G, x1, x2, d, collapsed)):
                assert_rel(got, want, tol)
print("ok")
"""


def _cpu_supports(isa):
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    need = {"avx512": ("avx512f", "avx512vl", "avx512dq", "avx512bw"), "avx2": ("avx2", "fma"), "base": ()}[isa]
    return all(f in flags for f in need)


@pytest.mark.parametrize("isa", ["avx512", "avx2", "base"])
def test_instruction_sets(isa):
    """The kernels are built per instruction set and picked at run time; IIC_FAST_CPU_ISA caps the choice, so
    the narrower builds (used on CPUs without AVX-512) are checked too, and build_info() reports which ran."""
    if not _cpu_supports(isa):
        pytest.skip(f"this CPU has no {isa}")
    env = dict(os.environ, IIC_FAST_CPU_ISA=isa, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(__file__)] + [p for p in sys.path if p]))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [isa, "ok"]


def test_build_info_reports_the_widest_instruction_set_of_this_cpu():
    if sys.platform != "linux" or os.environ.get("IIC_FAST_CPU_ISA"):
        pytest.skip("needs /proc/cpuinfo and no IIC_FAST_CPU_ISA cap")
    widest = next(isa for isa in ("avx512", "avx2", "base") if _cpu_supports(isa))
    assert iic.build_info()["cpu_isa"] == widest
