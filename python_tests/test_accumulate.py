"""JointAccumulator: micro-batched and multi-process gradients equal the full-batch gradient."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

import iic_fast as iic
from iic_fast.accumulate import JointAccumulator

pytestmark = pytest.mark.filterwarnings("ignore:iic_fast")


def _segmentation_net(dtype, batchnorm=False):
    torch.manual_seed(0)
    layers = [nn.Conv2d(2, 6, 3, padding=1)] + ([nn.BatchNorm2d(6)] if batchnorm else []) + [
        nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1), nn.Softmax(dim=1)]
    return nn.Sequential(*layers).to(dtype)


def _batch(n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    img1 = torch.rand(n, 2, 9, 8, generator=g, dtype=dtype)
    img2 = img1.flip(3) + 0.05 * torch.randn(n, 2, 9, 8, generator=g, dtype=dtype)
    mask = (torch.rand(n, 9, 8, generator=g) < 0.8).to(dtype)
    return img1, img2, mask


def _full_batch_grads(net, img1, img2, mask, d, collapsed, lamb):
    net.zero_grad()
    loss, _ = iic.segmentation_loss(net(img1), net(img2).flip(3), d=d, mask=mask, collapsed=collapsed, lamb=lamb)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in net.parameters()]


def _micro_batch_grads(net, img1, img2, mask, d, collapsed, lamb, micro):
    net.zero_grad()
    acc = JointAccumulator(d=d, collapsed=collapsed)
    chunks = list(zip(img1.split(micro), img2.split(micro), mask.split(micro)))
    with torch.no_grad():
        for a, b, m in chunks:
            acc.add(net(a), net(b).flip(3), mask=m)
    acc.all_reduce()
    loss, _ = acc.loss(lamb)
    for a, b, m in chunks:
        acc.backward(net(a), net(b).flip(3), mask=m)
    return loss, [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("micro", [1, 3, 7])
@pytest.mark.parametrize("collapsed", [False, True])
def test_micro_batches_give_the_full_batch_gradient(dtype, rtol, micro, collapsed):
    net = _segmentation_net(dtype)
    img1, img2, mask = _batch(7, dtype)
    full_loss, full = _full_batch_grads(net, img1, img2, mask, 2, collapsed, 1.5)
    loss, grads = _micro_batch_grads(net, img1, img2, mask, 2, collapsed, 1.5, micro)
    torch.testing.assert_close(loss, full_loss.to(loss.dtype), rtol=rtol, atol=0)
    for g, f in zip(grads, full):
        torch.testing.assert_close(g, f, rtol=rtol, atol=rtol * f.abs().max().item())


def test_batchnorm_in_eval_mode_is_exact():
    net = _segmentation_net(torch.float64, batchnorm=True).eval()
    img1, img2, mask = _batch(6, torch.float64)
    _, full = _full_batch_grads(net, img1, img2, mask, 1, False, 1.0)
    _, grads = _micro_batch_grads(net, img1, img2, mask, 1, False, 1.0, 4)
    for g, f in zip(grads, full):
        torch.testing.assert_close(g, f, rtol=1e-10, atol=1e-13)


def test_clustering_joint_accumulates_exactly():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4, dtype=torch.float64), nn.Softmax(dim=1))
    x = torch.rand(10, 5, dtype=torch.float64)
    xt = x + 0.1 * torch.rand(10, 5, dtype=torch.float64)
    iic.clustering_loss(net(x), net(xt), lamb=1.2)[0].backward()
    full = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    acc = JointAccumulator()
    with torch.no_grad():
        for a, b in zip(x.split(4), xt.split(4)):
            acc.add(net(a), net(b))
    acc.loss(lamb=1.2)
    for a, b in zip(x.split(4), xt.split(4)):
        acc.backward(net(a), net(b))
    for p, f in zip(net.parameters(), full):
        torch.testing.assert_close(p.grad, f, rtol=1e-10, atol=1e-14)


def test_misuse_gives_clear_errors():
    acc = JointAccumulator(d=1)
    with pytest.raises(RuntimeError, match="add"):
        acc.loss()
    x = torch.rand(1, 2, 4, 4, dtype=torch.float64).softmax(1)
    acc.add(x, x)
    with pytest.raises(RuntimeError, match="loss"):
        acc.backward(x, x)
    with pytest.raises(ValueError, match="d must be"):
        JointAccumulator(d=-1)


def _ddp_worker(rank, world, store_file, out_dir):
    # A FileStore rendezvous: no port to race for and no TCPStore server thread in rank 0 (a CI run once
    # aborted in rank 0 with "terminate called without an active exception").
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    net = nn.parallel.DistributedDataParallel(_segmentation_net(torch.float64))
    img1, img2, mask = (t.chunk(world)[rank] for t in _batch(6, torch.float64))
    loss, grads = _micro_batch_grads(net, img1, img2, mask, 2, False, 1.5, 2)
    torch.save({"loss": loss, "grads": grads}, os.path.join(out_dir, f"rank{rank}.pt"))
    del net                                  # release DDP's reducer before its process group goes
    dist.barrier()                           # no rank tears down while the other still communicates
    dist.destroy_process_group()


def test_two_gloo_processes_equal_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    net = _segmentation_net(torch.float64)
    full_loss, full = _full_batch_grads(net, *_batch(6, torch.float64), 2, False, 1.5)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(result["loss"], full_loss, rtol=1e-10, atol=0)
        for g, f in zip(result["grads"], full):
            torch.testing.assert_close(g, f, rtol=1e-9, atol=1e-13)
