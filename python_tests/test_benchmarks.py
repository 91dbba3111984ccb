"""The benchmark tooling: README tables equal their results files, run metadata, bench_memory's exactness."""
import argparse
import json
import os
import re
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import _meta  # noqa: E402
import bench_memory  # noqa: E402
import readme_tables  # noqa: E402


def test_readme_tables_equal_their_results_files(capsys):
    assert readme_tables.main(["--check"]) == 0, capsys.readouterr().err
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = readme_tables.MARKER.findall(f.read())
    assert {b[1] for b in blocks} >= {"loss", "memory", "layout", "pairs", "models", "kernels_dev"}
    for _, kind, paths, body, _ in blocks:
        for path in paths.split():  # every table cites each of its files
            assert f"Source: `{path}`" in body, (kind, path)


def test_readme_tables_check_fails_on_drift_and_rewrite_restores(tmp_path, capsys):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        original = f.read()
    block = readme_tables.MARKER.search(original)
    row = block.group(4).splitlines()[-1]
    drifted = original.replace(row, re.sub(r"\d", "7", row), 1)
    assert drifted != original
    readme = tmp_path / "README.md"
    readme.write_text(drifted, encoding="utf-8")
    assert readme_tables.main(["--readme", str(readme), "--check"]) == 1
    assert "differ from their results files" in capsys.readouterr().err
    assert readme_tables.main(["--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == original


def test_readme_tables_name_a_missing_file(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- tables:loss benchmarks/results/nope.json -->\n<!-- /tables -->\n", encoding="utf-8")
    assert readme_tables.main(["--readme", str(readme), "--check"]) == 2
    assert "benchmarks/results/nope.json" in capsys.readouterr().err
    readme.write_text("<!-- tables:speed benchmarks/results/nope.json -->\n<!-- /tables -->\n", encoding="utf-8")
    assert readme_tables.main(["--readme", str(readme)]) == 2
    assert "unknown table kind 'speed'" in capsys.readouterr().err


def test_results_metadata_and_file_name(tmp_path):
    meta = _meta.metadata("cpu")
    assert re.fullmatch(r"[0-9a-f]{40}", meta["git_commit"]) and isinstance(meta["git_dirty"], bool)
    assert meta["threads"] == torch.get_num_threads() and meta["torch"] == torch.__version__
    assert meta["cpu_model"] and set(meta["cpu_isa"]) <= set(_meta.ISA_FLAGS) and meta["command"]
    path = _meta.write_results(str(tmp_path), "probe", "cpu", {"results": [1]}, meta)
    assert os.path.basename(path) == f"{meta['date'][:10]}_cpu{os.cpu_count()}_probe.json"
    with open(path, encoding="utf-8") as f:
        written = json.load(f)
    assert written["results"] == [1] and written["meta"]["git_commit"] == meta["git_commit"]
    assert len(written["meta"]["loadavg_1_5_15_end"]) == 3


@pytest.mark.filterwarnings("ignore:iic_fast")
def test_bench_memory_gradient_is_exact_only_with_batchnorm_in_eval_mode(tmp_path):
    diffs = {}
    for batchnorm in ("eval", "train"):
        args = argparse.Namespace(device="cpu", size=16, batch=4, d=1, steps=1, batchnorm=batchnorm)
        grads = []
        for micro in (4, 2):
            row = bench_memory.run_case(args, micro, str(tmp_path / f"{batchnorm}{micro}.pt"))
            assert row["micro_batch"] == micro and row["peak_mb"] >= 0 and row["step_s"] > 0
            grads.append(torch.load(tmp_path / f"{batchnorm}{micro}.pt"))
        diffs[batchnorm] = float((grads[1] - grads[0]).norm() / grads[0].norm())
    assert diffs["eval"] < 1e-5 and diffs["train"] > 1e-2, diffs
