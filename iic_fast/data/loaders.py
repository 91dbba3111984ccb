"""DataLoader wiring: CPU workers only decode and crop (uint8), memory is pinned, batches go to the
device asynchronously, and all augmentation happens there (``pairs``). Shuffling and worker-side
crops are functions of (seed, epoch), so a resumed run sees the same batches."""
from __future__ import annotations

import os
from typing import Any, Iterator

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, Subset


class EpochSampler(Sampler[int]):
    """Permutation of range(n) that depends only on (seed, epoch) (identity when not shuffling)."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, int(seed), shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def default_workers() -> int:
    """A few decode workers, leaving one core for the main process."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int | None = None,
    pin_memory: bool | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """DataLoader over a dataset of uint8 samples (e.g. ``Potsdam``, ``CocoStuff``, ``stl10``).

    Workers only decode and crop; ``pin_memory`` defaults to True when CUDA is available so the
    copies in ``device_batches`` are asynchronous. Workers are not persistent, so each epoch's
    workers see the epoch set by ``set_epoch``. Batches are the default-collated samples, e.g.
    (img uint8 (B, C, S, S), label int64 (B, S, S), mask bool (B, S, S)) for segmentation."""
    nw = default_workers() if num_workers is None else num_workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochSampler(len(dataset), seed, shuffle),
        num_workers=nw,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=drop_last,
        persistent_workers=False,
        prefetch_factor=4 if nw > 0 else None,
    )


def _datasets(ds: Dataset) -> Iterator[Dataset]:
    yield ds
    if isinstance(ds, ConcatDataset):
        for d in ds.datasets:
            yield from _datasets(d)
    elif isinstance(ds, Subset):
        yield from _datasets(ds.dataset)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Set the epoch of the loader's sampler and of every (nested) dataset with ``set_epoch``."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    for d in _datasets(loader.dataset):
        if hasattr(d, "set_epoch"):
            d.set_epoch(epoch)


def to_device(batch: Any, device: torch.device | str, non_blocking: bool = True) -> Any:
    """Move a (nested tuple/list/dict of) tensors to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device, non_blocking) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    return batch


def device_batches(
    loader: DataLoader, device: torch.device | str, epoch: int | None = None
) -> Iterator[Any]:
    """Iterate ``loader`` with batches on ``device``; on CUDA the next batch is copied on a side
    stream while the current one is used. Sets the epoch first when given."""
    if epoch is not None:
        set_epoch(loader, epoch)
    device = torch.device(device)
    if device.type != "cuda":
        for b in loader:
            yield to_device(b, device)
        return
    stream = torch.cuda.Stream(device)

    def issue(b: Any) -> Any:
        with torch.cuda.stream(stream):
            return to_device(b, device)

    it = iter(loader)
    nxt = next(it, None)
    nxt = issue(nxt) if nxt is not None else None
    while nxt is not None:
        torch.cuda.current_stream(device).wait_stream(stream)
        cur = nxt
        for t in (cur if isinstance(cur, (list, tuple)) else [cur]):
            if isinstance(t, torch.Tensor):
                t.record_stream(torch.cuda.current_stream(device))  # memory owned by the consumer
        raw = next(it, None)
        nxt = issue(raw) if raw is not None else None
        yield cur
