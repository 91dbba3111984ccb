"""Using trained runs: load_run / RunModel.segment / cluster (preprocessing, sub-head, tiling, input kinds),
the image reader, and the ``iic-fast segment`` / ``cluster`` commands with their bad inputs."""
from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from iic_fast.cli import main
from iic_fast.data.transforms import rgb_to_grey, sobel_process
from iic_fast.deploy.images import read_image
from iic_fast.deploy.inference import RunModel, _input_spec, build_network, load_run, save_run
from iic_fast.train import preset

pytestmark = pytest.mark.filterwarnings("ignore:iic_fast. no compiled kernels")


def make_run(path, name="textures3", losses=None, **overrides):
    """A run directory holding an untrained (seeded) network of preset ``name``; returns (path, net)."""
    torch.manual_seed(0)
    config = preset(name, **overrides)
    net = build_network(config).eval()
    save_run(str(path), config, net.state_dict(), losses)
    return str(path), net


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    # Sobel on (as folder runs; the textures3 preset itself takes the grey alone): a preprocessing to get right
    return make_run(tmp_path_factory.mktemp("seg") / "run", num_sub_heads=3, losses=[0.5, -1.0, 0.2],
                    pairs={"sobel": True})


@pytest.fixture(scope="module")
def clu_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("clu") / "run", "digits", num_sub_heads=2, losses=[0.3, 0.1])


def test_segment_applies_the_runs_preprocessing_and_lowest_loss_subhead(seg_run):
    path, net = seg_run
    model = load_run(path, device="cpu")
    assert model.subhead == 1 and model.task == "segmentation" and model.k == 3
    image = torch.rand(1, 1, 40, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # by hand: grey + Sobel, main head, sub-head 1
        expected = net(sobel_process(image, 1, True), head="B")[1]
    probs = model.segment(image, probs=True)
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-4)
    assert torch.equal(model.segment(image), expected.argmax(1))
    assert load_run(path, device="cpu", subhead=2).subhead == 2


def test_segment_input_kinds_and_shapes(seg_run):
    model = load_run(seg_run[0], device="cpu")
    grey = (np.random.default_rng(0).random((30, 44)) * 255).astype(np.uint8)
    rgb = np.stack([grey, grey // 2, 255 - grey], -1)
    single = model.segment(grey)
    assert single.shape == (30, 44) and single.dtype == torch.int64
    assert torch.equal(model.segment(Image.fromarray(grey)), single)
    assert torch.equal(model.segment(torch.from_numpy(grey)), single)
    # colour given to a grey run: luma (float), the same as giving the luma image
    luma = rgb_to_grey(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
    assert torch.equal(model.segment(rgb), model.segment(luma)[0])
    out = model.segment([grey, rgb[:20, :25], grey], probs=True)
    assert [tuple(p.shape) for p in out] == [(3, 30, 44), (3, 20, 25), (3, 30, 44)]
    torch.testing.assert_close(out[0].sum(0), torch.ones(30, 44))
    with pytest.raises(ValueError, match="channel"):
        model.segment(torch.rand(2, 30, 44))
    with pytest.raises(TypeError, match="images must be"):
        model.segment("not an image")


def test_tiled_segmentation_equals_whole_image_away_from_tile_overlaps(seg_run):
    whole = load_run(seg_run[0], device="cpu")
    tiled = load_run(seg_run[0], device="cpu", max_pixels=64 * 64, overlap=32)
    image = torch.rand(1, 1, 96, 96, generator=torch.Generator().manual_seed(2))
    a, b = whole.segment(image, probs=True)[0], tiled.segment(image, probs=True)[0]
    # tiles start at 0 and 32 on each axis: [0, 32) and [64, 96) are covered by one tile at full weight
    keep = torch.zeros(96, dtype=torch.bool)
    keep[:32] = keep[64:] = True
    torch.testing.assert_close(a[:, keep][:, :, keep], b[:, keep][:, :, keep], atol=1e-5, rtol=0)
    assert not torch.allclose(a, b, atol=1e-5)  # the overlaps are blended, not copied


def test_ramps_blend_tile_seams_better_than_a_flat_average(seg_run):
    whole = load_run(seg_run[0], device="cpu")
    tiled = load_run(seg_run[0], device="cpu", max_pixels=64 * 64, overlap=32)
    image = torch.rand(1, 1, 64, 96, generator=torch.Generator().manual_seed(7))  # tiles at columns 0 and 32
    exact = whole.segment(image, probs=True)[..., 32:64]  # the overlap
    x = whole.preprocess(image)
    flat = (whole.head(x[..., :64])[..., 32:] + whole.head(x[..., 32:])[..., :32]) / 2
    blended = tiled.segment(image, probs=True)[..., 32:64]
    # each tile is wrong near its own edge; the ramps give those pixels little weight (~6x smaller error here)
    assert (blended - exact).abs().max() < 0.5 * (flat - exact).abs().max()


class _Pointwise(torch.nn.Module):
    """A segmentation net without border effects: a 1x1 conv and a softmax."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)

    def forward(self, x, head="B"):
        return [self.conv(x).softmax(1)]


def test_tiles_blend_to_the_whole_image_on_a_net_without_border_effects():
    config, net = preset("textures3", num_sub_heads=1, pairs={"sobel": True}), _Pointwise()  # 3 input channels
    make = lambda pixels: RunModel(net, config, _input_spec(config), 0, torch.device("cpu"), max_pixels=pixels,
                                   overlap=8)
    image = torch.rand(1, 75, 130, generator=torch.Generator().manual_seed(3))
    whole, tiled = make(10**6), make(32 * 32)
    assert tiled.tile == 32 and whole.stride == 1
    torch.testing.assert_close(tiled.segment(image, probs=True), whole.segment(image, probs=True), atol=1e-6, rtol=0)


def test_cluster_resizes_whole_images_and_uses_the_selected_subhead(clu_run):
    path, net = clu_run
    model = load_run(path, device="cpu")
    assert model.subhead == 1 and model.task == "clustering"
    images = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = net(images, head="B")[1]
    ids, confidence = model.cluster(images)
    assert torch.equal(ids, expected.argmax(1))
    torch.testing.assert_close(confidence, expected.max(1).values)
    torch.testing.assert_close(model.cluster(images, probs=True), expected)
    big = torch.nn.functional.interpolate(images, scale_factor=4, mode="nearest")  # any size: resized whole
    assert (model.cluster(list(big))[0] == ids).float().mean() >= 0.6


def test_task_mismatch_and_missing_checkpoint_are_clear_errors(seg_run, clu_run, tmp_path):
    with pytest.raises(ValueError, match="segmentation run; cluster needs a clustering run"):
        load_run(seg_run[0], device="cpu").cluster(torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="clustering run; segment needs a segmentation run"):
        load_run(clu_run[0], device="cpu").segment(torch.rand(1, 8, 8))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(str(tmp_path / "nowhere"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'best.pt'} not found"):
        load_run(str(tmp_path))


def test_bgr_runs_reorder_rgb_input(tmp_path):
    path, net = make_run(tmp_path / "coco", "cocostuff3", arch="SmallSegNetTwoHead", input_size=32)
    model = load_run(path, device="cpu")
    assert model.spec.bgr
    rgb = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():  # the original's COCO input: B, G, R, then Sobel of the grey of that order
        expected = net(sobel_process(rgb.flip(1), 3, True), head="B")[0]
    torch.testing.assert_close(model.segment(rgb, probs=True), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("command, options", [
    ("segment", ["--out", "--probs", "--batch-size", "--device", "--amp", "--checkpoint", "--skip-bad-images",
                 "--max-pixels", "torchrun"]),
    ("cluster", ["--out", "--batch-size", "--device", "--amp", "--checkpoint", "confidence"]),
    ("export", ["--format", "torchscript", "onnx", "--out"]), ("import-original", ["config.pickle", "--out"])])
def test_help_shows_every_new_command(command, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(option in out for option in options), out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert command in capsys.readouterr().out


def test_iic_fast_eval_reads_a_saved_run(tmp_path, capsys):
    path, _ = make_run(tmp_path / "run", n_test=4, test_size=32, losses=[0.0])
    assert main(["eval", path, "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 0 and 0.0 <= result["test_acc"] <= 1.0


# ---------------------------------------------------------------------- iic-fast segment / cluster
@pytest.fixture
def photos(tmp_path):
    """Real photographs of mixed sizes and formats (scikit-image's bundled data), one in a sub-folder, and
    a label folder."""
    import skimage.data

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(skimage.data.coins()[::2, ::2]).save(folder / "coins.png")
    Image.fromarray(skimage.data.astronaut()[::4, ::4]).save(folder / "astronaut.jpg")
    Image.fromarray(skimage.data.astronaut()[100:190, 50:171]).save(folder / "sub" / "crop.tif")
    (folder / "notes.txt").write_text("not an image")
    (folder / "labels").mkdir()  # ground truth beside the images (folder datasets' layout): not an input
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "labels" / "coins.png")
    return folder


def test_segment_writes_labels_and_overlay_per_photo(seg_run, photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", seg_run[0], str(photos), "--out", str(out), "--probs", "--device", "cpu",
                 "--no-progress", "--batch-size", "2"]) == 0
    model = load_run(seg_run[0], device="cpu")
    for name, source in (("coins", "coins.png"), ("astronaut", "astronaut.jpg"), ("sub/crop", "sub/crop.tif")):
        image = read_image(str(photos / source), 1)
        labels = Image.open(out / f"{name}_labels.png")
        overlay = Image.open(out / f"{name}_overlay.png")
        assert labels.mode == "P" and overlay.mode == "RGB"
        assert labels.size == overlay.size == (image.shape[2], image.shape[1])
        assert np.array_equal(np.asarray(labels), model.segment(image).numpy())
        assert np.load(out / f"{name}_probs.npy").shape == (3, image.shape[1], image.shape[2])
    assert len(list(out.rglob("*"))) == 3 * 3 + 1  # 3 files per image and the sub-folder


def test_segment_never_overwrites_inputs(seg_run, photos, capsys):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(photos / "coins_labels.png")  # an input with an output's name
    before = sorted(photos.rglob("*"))
    assert main(["segment", seg_run[0], str(photos), "--out", str(photos), "--device", "cpu", "--no-progress"]) == 2
    assert "refusing to overwrite the input image" in capsys.readouterr().err
    assert sorted(photos.rglob("*")) == before
    (photos / "coins_labels.png").unlink()
    run = [seg_run[0], str(photos), "--device", "cpu", "--no-progress"]
    for _ in range(2):  # an output folder inside the input folder is not an input
        assert main(["segment", *run, "--out", str(photos / "segmented")]) == 0
    assert len(list((photos / "segmented").rglob("*_labels.png"))) == 3
    (photos / "segmented").rename(photos.parent / "elsewhere")
    assert main(["segment", *run, "--out", str(photos)]) == 0  # beside the inputs: no name collides
    assert len(list(photos.rglob("*_labels.png"))) == 3
    assert main(["segment", *run, "--out", str(photos)]) == 2  # now they are inputs: never overwritten
    assert "refusing to overwrite the input image" in capsys.readouterr().err


def test_segment_bad_inputs_exit_2_naming_them(seg_run, photos, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    run = ["--device", "cpu", "--no-progress"]
    assert main(["segment", seg_run[0], str(photos), "--out", str(afile), *run]) == 2
    assert f"--out {afile} is a file" in capsys.readouterr().err
    assert main(["segment", str(tmp_path), str(photos), "--out", str(tmp_path / "o"), *run]) == 2
    assert f"{tmp_path / 'best.pt'} not found" in capsys.readouterr().err
    assert main(["segment", seg_run[0], str(tmp_path / "missing.png"), "--out", str(tmp_path / "o"), *run]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (photos / "broken.png").write_bytes(b"not a PNG")
    assert main(["segment", seg_run[0], str(photos), "--out", str(tmp_path / "o"), *run]) == 2
    assert "broken.png" in capsys.readouterr().err and not (tmp_path / "o").exists()  # nothing written
    (photos / "broken.png").unlink()
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(buf, format="JPEG")
    (photos / "truncated.jpg").write_bytes(buf.getvalue()[:200])
    assert main(["segment", seg_run[0], str(photos), "--out", str(tmp_path / "o"), *run]) == 2
    assert "truncated.jpg" in capsys.readouterr().err
    assert main(["segment", seg_run[0], str(photos), "--out", str(tmp_path / "o"), "--skip-bad-images", *run]) == 0
    err = capsys.readouterr().err
    assert err.count("skipping") == 1 and "truncated.jpg" in err
    assert sorted(p.name for p in (tmp_path / "o").rglob("*_labels.png")) == [
        "astronaut_labels.png", "coins_labels.png", "crop_labels.png"]


def test_segment_shards_inputs_across_torchrun_ranks(seg_run, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    out = tmp_path / "rank1"
    assert main(["segment", seg_run[0], str(photos), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    # sorted inputs: astronaut.jpg, coins.png, sub/crop.tif -> rank 1 of 2 takes coins only
    assert sorted(p.name for p in out.rglob("*.png")) == ["coins_labels.png", "coins_overlay.png"]


def test_cluster_command_writes_assignments(clu_run, photos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "assignments.csv"
    assert main(["cluster", clu_run[0], str(photos), "--out", str(out), "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(out)))
    model = load_run(clu_run[0], device="cpu")
    ids, confidence = model.cluster([read_image(r["path"], 1) for r in rows])
    assert [os.path.basename(r["path"]) for r in rows] == ["astronaut.jpg", "coins.png", "crop.tif"]
    assert [int(r["cluster"]) for r in rows] == ids.tolist()
    np.testing.assert_allclose([float(r["confidence"]) for r in rows], confidence.numpy(), atol=1e-6)
    assert main(["cluster", clu_run[0], str(photos), "--out", str(tmp_path), "--device", "cpu"]) == 2
    assert "is a folder" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["cluster", clu_run[0], str(photos), "--out", str(out), "--device", "cpu"]) == 0
    rank0 = list(csv.DictReader(open(tmp_path / "assignments.rank0.csv")))  # one CSV per rank
    assert [r["path"] for r in rank0] == [rows[0]["path"], rows[2]["path"]]


def test_amp_segments_like_float32(seg_run):
    image = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(6))
    exact = load_run(seg_run[0], device="cpu").segment(image, probs=True)
    low = load_run(seg_run[0], device="cpu", amp=True).segment(image, probs=True)
    assert low.dtype == torch.float32 and not torch.equal(low, exact)  # bfloat16 ran, probabilities float32
    torch.testing.assert_close(low, exact, atol=0.05, rtol=0)
