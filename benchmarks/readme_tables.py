"""Writes the README's measured tables from the results JSON files they name, so it shows only measured numbers.

    python benchmarks/readme_tables.py            # rewrite every table in README.md
    python benchmarks/readme_tables.py --check    # exit status 1 if any table differs from its file

A table lives between two marker comments that name its kind and its results file(s) (paths relative to
the repository root), e.g.::

    <!-- tables:loss benchmarks/results/2026-12-01_cpu2_loss.json -->
    (generated: a source line citing the file, its commit, device, threads and load; then the table)
    <!-- /tables -->

Kinds: ``loss`` (bench_loss.py, CPU or GPU), ``memory`` (bench_memory.py), ``layout`` (bench_layout.py,
one file per thread count), ``pairs`` (bench_pairs.py), ``models`` (model_table.py) and ``kernels_dev``
(the H100 file written during kernel development, before the shared metadata existed).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = re.compile(r"(<!-- tables:(\w+) ([^>]+?) -->\n)(.*?)(<!-- /tables -->)", re.S)
IMPL_COLUMNS = {"reference": "conv trick", "fft": "PyTorch box+GEMM / FFT", "kernel": "kernel"}


def _ms(ms: float) -> str:
    """A time to three significant digits, in ms below a second, else in s."""
    return f"{ms / 1e3:.3g} s" if ms >= 1e3 else f"{ms:.3g} ms"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _x(speedup: float) -> str:
    """A speed-up: whole numbers from 100x on, else three significant digits."""
    return f"{speedup:,.0f}x" if speedup >= 100 else f"{speedup:.3g}x"


def source_line(path: str, report: dict) -> str:
    """Where a table comes from: the file and, when it has them, its run's commit, device, threads and load."""
    meta = report.get("meta")
    if meta is None:  # written before benchmarks/_meta.py: what the file itself says
        said = ", ".join(f"{key} {report[key]}" for key in ("git_sha", "device", "threads", "torch", "date")
                         if key in report)
        return f"Source: `{path}` (written before `benchmarks/_meta.py`; the file records: {said or 'nothing'})."
    dirty = f" + uncommitted changes in {len(meta['git_dirty_files'])} files" if meta["git_dirty"] else ""
    loads = [f"{meta[key][0]:.1f} at the {when}" for key, when in (("loadavg_1_5_15", "start"),
             ("loadavg_1_5_15_end", "end")) if meta.get(key)]
    load_text = f", 1-min load average {' and '.join(loads)}" if loads else ""
    return (f"Source: `{path}` (git {meta['git_commit'][:7]}{dirty}; {meta['device_name']}, "
            f"{_plural(meta['threads'], 'thread')}, torch {meta['torch']}{load_text}; {meta['date'][:10]}).")


def loss_table(report: dict) -> list[str]:
    """bench_loss.py: one row per shape and loss, fwd+bwd medians with the speed-up over the conv trick."""
    lines = ["| n, k, H x W, d | loss | conv trick | PyTorch box+GEMM / FFT | kernel | auto picks | "
             "peak extra memory, x inputs (conv / PyTorch / kernel) |", "|---|---|---:|---:|---:|---|---|"]
    groups: dict[tuple, dict] = {}
    for r in report["results"]:
        groups.setdefault((r["n"], r["k"], r["H"], r["W"], r["d"], r["mode"]), {})[r["impl"]] = r

    def cell(r: dict) -> str:
        if "error" in r:
            return "error"
        speed = f" ({_x(r['speedup_fwd_bwd'])})" if r["impl"] != "reference" and "speedup_fwd_bwd" in r else ""
        return _ms(r["fwd_bwd_ms"]) + speed

    for (n, k, H, W, d, mode), rows in groups.items():
        auto = rows.get("auto", {})
        picks = f"{auto['algorithm']}, {cell(auto)}" if "algorithm" in auto else "-"
        memory = " / ".join(f"{rows[i]['peak_extra_mb'] / rows[i]['input_mb']:.3g}" if "peak_extra_mb" in
                            rows.get(i, {}) else "-" for i in IMPL_COLUMNS)
        impls = " | ".join(cell(rows[i]) if i in rows else "-" for i in IMPL_COLUMNS)
        lines.append(f"| {n}, {k}, {H}x{W}, {d} | {mode} | {impls} | {picks} | {memory} |")
    return lines


def memory_table(report: dict) -> list[str]:
    """bench_memory.py: peak memory, step time and gradient difference per micro-batch size."""
    lines = [f"| micro-batch (batch {report['batch']}, {report['size']}x{report['size']}, d={report['d']}, "
             f"BatchNorm {report['batchnorm']}) | peak memory | vs full batch | step time (median of "
             f"{report['steps']}) | gradient vs full batch (relative norm) |", "|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['micro_batch']} | error | | | |")
            continue
        full = r["micro_batch"] == report["reference_micro_batch"]
        kind = "plain full batch" if r["micro_batch"] >= report["batch"] else "JointAccumulator"
        diff = "(the reference)" if full else f"{r['grad_rel_diff_vs_full']:.1e}"
        lines.append(f"| {r['micro_batch']} ({kind}) | {r['peak_mb']:.0f} MB | {100 * r['peak_vs_full']:.0f} % | "
                     f"{r['step_s']:.3g} s | {diff} |")
    return lines


def layout_table(reports: list[dict]) -> list[str]:
    """bench_layout.py: NCHW vs NHWC step time per preset and thread count (medians over the repeats of each
    repeat's median) and the spread of the speed-up over the repeats."""
    lines = ["| preset | threads | NCHW ms/step | NHWC ms/step | NHWC speed-up: median (min - max) | repeats |",
             "|---|---:|---:|---:|---:|---:|"]
    for report in reports:
        for name, s in report["speedup_spread"].items():
            rows = [r for r in report["rows"] if r["preset"] == name]
            nchw, nhwc = (statistics.median(r[key] for r in rows) for key in ("NCHW_ms", "NHWC_ms"))
            lines.append(f"| {name} | {report['meta']['threads']} | {nchw:.0f} | {nhwc:.0f} | {s['median']:.2f}x "
                         f"({s['min']:.2f}x - {s['max']:.2f}x) | {s['repeats']} |")
    return lines


def pairs_table(report: dict) -> list[str]:
    """bench_pairs.py: pairs/s of both pipelines, in total and per core."""
    t = report["threads_each_side"]
    lines = [f"| case | per-sample PIL ({_plural(t, 'DataLoader worker')}): pairs/s | per core | batched "
             f"({_plural(t, 'thread')}): "
             "pairs/s | per core | speed-up |", "|---|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {r['case']} ({r['pairs_per_batch']} pairs/batch) | {r['per_sample_pairs_per_s']:,.0f} | "
                     f"{r['per_sample_pairs_per_s_per_core']:,.0f} | {r['batched_pairs_per_s']:,.0f} | "
                     f"{r['batched_pairs_per_s_per_core']:,.0f} | {r['speedup']:.2g}x |")
    return lines


def models_table(report: dict) -> list[str]:
    """model_table.py: its rows as they are."""
    cols = report["columns"]
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
            *("| " + " | ".join(row[c] for c in cols) + " |" for row in report["rows"])]


def kernels_dev_table(report: dict) -> list[str]:
    """The H100 kernel-development file: fwd+bwd medians, kernel extra memory, error against float64."""
    lines = ["| n, k, H x W, d | loss | conv trick (cuDNN, TF32) | PyTorch box+GEMM / untiled FFT | kernel | "
             "kernel forward extra memory | relative error vs float64: kernel / conv trick |",
             "|---|---|---:|---:|---:|---:|---|"]
    for c in report["cases"]:
        conv = c["conv_trick_fwd_bwd"]["median_ms"]
        for mode, torch_key in (("collapsed", "box_reference_fwd_bwd"), ("uncollapsed", "fft_reference_fwd_bwd")):
            kernel, fwd = c[f"{mode}_loss_fwd_bwd"]["median_ms"], c[f"{mode}_fwd"]
            ref = c[torch_key]["median_ms"]
            lines.append(f"| {c['n']}, {c['k']}, {c['H']}x{c['W']}, {c['d']} | {mode} | {_ms(conv)} | "
                         f"{_ms(ref)} ({_x(conv / ref)}) | {_ms(kernel)} ({_x(conv / kernel)}) | "
                         f"{fwd['extra_MB']:.2g} MB ({fwd['extra_pct_of_inputs']:.2g} % of inputs) | "
                         f"{c[f'{mode}_relerr_vs_fp64']:.1e} / {c[f'conv_trick_{mode}_relerr_vs_fp64']:.1e} |")
    return lines


RENDER = {"loss": loss_table, "memory": memory_table, "pairs": pairs_table, "models": models_table,
          "kernels_dev": kernels_dev_table}


def render(kind: str, paths: list[str]) -> str:
    """The generated text of one marked block: a source line per file, then the table."""
    if kind not in RENDER and kind != "layout":
        raise ValueError(f"unknown table kind {kind!r}; choices: layout, {', '.join(RENDER)}")
    reports = []
    for path in paths:
        try:
            with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                reports.append(json.load(f))
        except FileNotFoundError:
            raise FileNotFoundError(f"results file {path} named in a README table marker does not exist") from None
    if kind != "layout" and len(reports) != 1:
        raise ValueError(f"a {kind} table takes one results file, got {len(paths)}: {' '.join(paths)}")
    sources = [source_line(p, r) for p, r in zip(paths, reports)]
    table = layout_table(reports) if kind == "layout" else RENDER[kind](reports[0])
    return "\n".join([*sources, "", *table]) + "\n"


def rewrite(text: str) -> str:
    """``text`` with every marked table regenerated from its files."""
    def one(m: re.Match) -> str:
        return m.group(1) + render(m.group(2), m.group(3).split()) + m.group(5)
    return MARKER.sub(one, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readme", default=os.path.join(ROOT, "README.md"), help="the file to rewrite (default README.md)")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs from its file")
    args = ap.parse_args(argv)
    with open(args.readme, encoding="utf-8") as f:
        text = f.read()
    try:
        new = rewrite(text)
    except (ValueError, FileNotFoundError) as error:
        print(f"readme_tables: {error}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(f"readme_tables: the tables in {args.readme} differ from their results files; run "
                  "python benchmarks/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        with open(args.readme, "w", encoding="utf-8") as f:
            f.write(new)
    print(f"{len(MARKER.findall(text))} tables in {args.readme}", "rewritten" if new != text else "unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
