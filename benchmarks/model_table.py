"""Print a markdown table of FLOPs, parameters and memory of the IIC networks at the paper's sizes.

    python benchmarks/model_table.py [--device cpu|cuda] [--batch 2] [--out DIR] [--quick]

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls, 2 per
multiply-add; BatchNorm, ReLU, pooling, softmax and upsampling are not counted) for one forward of one
image through the trunk and the named head. "Saved activations" is the size of the distinct tensors
autograd keeps for the backward of one training-mode forward (parameters excluded), per image, in the
model's dtype (fp32): the activation memory a training step needs per view. With ``--device cuda``
the table adds the measured peak CUDA memory of one forward + backward at ``--batch``. Writes
<out>/<date>_<device>_models.json (the rows, with the metadata of benchmarks/_meta.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install
sys.path.insert(0, str(Path(__file__).resolve().parent))
from iic_fast.models import build  # noqa: E402
from _meta import add_common_args, metadata, write_results  # noqa: E402

# (run, model name, build kwargs): reference/iic_original.md section 4.
RUNS: list[tuple[str, str, dict]] = [
    ("STL10", "ClusterNet5gTwoHead", dict(in_channels=2, input_sz=64, output_k_A=70, output_k_B=10, num_sub_heads=5)),
    ("CIFAR10", "ClusterNet5gTwoHead", dict(in_channels=2, input_sz=32, output_k_A=70, output_k_B=10, num_sub_heads=5)),
    ("CIFAR100-20", "ClusterNet5gTwoHead", dict(in_channels=2, input_sz=32, output_k_A=140, output_k_B=20, num_sub_heads=5)),
    ("MNIST", "ClusterNet6cTwoHead", dict(in_channels=1, input_sz=24, output_k_A=50, output_k_B=10, num_sub_heads=5)),
    ("COCO-Stuff-3", "SegmentationNet10aTwoHead", dict(in_channels=5, input_sz=128, output_k_A=15, output_k_B=3)),
    ("COCO-Stuff-15", "SegmentationNet10aTwoHead", dict(in_channels=5, input_sz=128, output_k_A=45, output_k_B=15)),
    ("Potsdam-3", "SegmentationNet10aTwoHead", dict(in_channels=4, input_sz=200, output_k_A=24, output_k_B=3)),
    ("Potsdam-6", "SegmentationNet10aTwoHead", dict(in_channels=4, input_sz=200, output_k_A=36, output_k_B=6)),
    ("STL10 IID+", "ClusterNet5g", dict(in_channels=2, input_sz=64, output_k=140, num_sub_heads=5)),
    ("CIFAR100-20 IID+", "ClusterNet6c", dict(in_channels=5, input_sz=24, output_k=280, num_sub_heads=5)),
    ("MNIST IID+", "ClusterNet6c", dict(in_channels=1, input_sz=24, output_k=25, num_sub_heads=5)),
    ("COCO-Stuff-3 IID+", "SegmentationNet10a", dict(in_channels=5, input_sz=128, output_k=15)),
    ("Potsdam-3 IID+", "SegmentationNet10a", dict(in_channels=4, input_sz=200, output_k=9)),
]

MB = 2.0 ** 20


def forward_flops(model: torch.nn.Module, x: torch.Tensor, **fwd: str) -> int:
    """FLOPs of one no-grad forward of ``x`` (n, C, H, W)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, **fwd)
    return counter.get_total_flops()


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor, **fwd: str) -> int:
    """Bytes of distinct storages autograd saves for backward in one training forward (no params)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = st.nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outs = model(x, **fwd)
    del outs
    return sum(seen.values())


def cuda_peak_bytes(model: torch.nn.Module, x: torch.Tensor, **fwd: str) -> int:
    """Peak CUDA memory of one training forward + backward (model already on the GPU)."""
    model.train()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    sum(o.float().square().mean() for o in model(x, **fwd)).backward()
    torch.cuda.synchronize()
    model.zero_grad(set_to_none=True)
    return torch.cuda.max_memory_allocated() - base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, "the MNIST networks only (the smallest): a dry run in seconds")
    ap.add_argument("--batch", type=int, default=2, help="batch for the memory measurements")
    args = ap.parse_args()
    meta = metadata(args.device)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    cols = ["run", "model", "in ch", "input", "k (A / B), sub-heads", "params (M)",
            "GFLOP/img head B", "GFLOP/img head A", "saved act. MB/img", "output KB/img"]
    if cuda:
        cols.append(f"CUDA peak MB (batch {args.batch}, fwd+bwd)")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    rows = []
    for run, name, kw in [r for r in RUNS if r[0].startswith("MNIST")] if args.quick else RUNS:
        torch.manual_seed(0)
        model = build(name, **kw).to(dev)
        s, c = kw["input_sz"], kw["in_channels"]
        two = "TwoHead" in name
        heads = {"B": {"head": "B"}, "A": {"head": "A"}} if two else {"B": {}}
        x1 = torch.rand(1, c, s, s, device=dev)
        xb = torch.rand(args.batch, c, s, s, device=dev)
        gf = {h: forward_flops(model.eval(), x1, **f) / 1e9 for h, f in heads.items()}
        act = saved_activation_bytes(model, xb, **heads["B"]) / args.batch / MB
        with torch.no_grad():
            out = sum(o.numel() * o.element_size() for o in model.eval()(x1, **heads["B"])) / 1024
        ks = f"{kw['output_k_A']} / {kw['output_k_B']}" if two else f"{kw['output_k']}"
        row = [run, name, str(c), f"{s}x{s}", f"{ks}, {kw.get('num_sub_heads', 1)}",
               f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}", f"{gf['B']:.2f}",
               f"{gf['A']:.2f}" if two else "-", f"{act:.1f}", f"{out:.1f}"]
        if cuda:
            row.append(f"{cuda_peak_bytes(model, xb, **heads['B']) / MB:.0f}")
        print("| " + " | ".join(row) + " |")
        rows.append(dict(zip(cols, row)))
    write_results(args.out, "models", args.device, {"batch": args.batch, "columns": cols, "rows": rows}, meta)


if __name__ == "__main__":
    main()
