"""pytest-benchmark suite for the loss (run with `python -m pytest benchmarks/`; never part of CI's tests).

Small shapes so that the whole suite runs in a minute on a 2-core CPU; benchmarks/bench_loss.py covers the
paper shapes. Compare groups by name: each group holds every implementation of one loss on one shape.
"""
import pytest
import torch

import iic_fast as iic

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SHAPES = [(8, 10, 64, 64, 3), (2, 24, 96, 96, 5)]


@pytest.mark.filterwarnings("ignore:iic_fast")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n{}-k{}-{}x{}-d{}".format(*s))
@pytest.mark.parametrize("collapsed", [True, False], ids=["collapsed", "uncollapsed"])
@pytest.mark.parametrize("impl", ["reference", "fft", "kernel"])
def test_loss_fwd_bwd(benchmark, device, shape, collapsed, impl):
    n, k, H, W, d = shape
    benchmark.group = f"{device}-{'collapsed' if collapsed else 'uncollapsed'}-{shape}"
    x1 = torch.randn(n, k, H, W, device=device).softmax(1).requires_grad_(True)
    x2 = torch.randn(n, k, H, W, device=device).softmax(1).requires_grad_(True)

    def step():
        loss, _ = iic.segmentation_loss(x1, x2, d=d, collapsed=collapsed, impl=impl)
        grads = torch.autograd.grad(loss, (x1, x2))
        if device == "cuda":
            torch.cuda.synchronize()
        return grads

    benchmark.pedantic(step, rounds=3 if impl == "reference" else 10, warmup_rounds=1)
