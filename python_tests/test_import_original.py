"""``import-original``: the original release's config.pickle (a Python 2 protocol-2 pickle of an argparse
Namespace) and best_net.pytorch (a torch 0.4 state_dict with the original's key names, DataParallel's
``module.`` prefix) become a run directory whose outputs equal the same weights loaded by hand."""
from __future__ import annotations

import argparse
import pickle
import struct

import pytest
import torch

from iic_fast.cli import main
from iic_fast.data import clustering_preset
from iic_fast.data.transforms import sobel_process
from iic_fast.deploy.inference import load_run
from iic_fast.deploy.original import import_original, read_original_config
from iic_fast.models import build

pytestmark = pytest.mark.filterwarnings("ignore:iic_fast. no compiled kernels")

POTSDAM3 = dict(arch="SegmentationNet10aTwoHead", dataset="Potsdam", use_coarse_labels=True, using_IR=True,
                include_rgb=True, no_sobel=True, in_channels=4, output_k_A=24, output_k_B=3, gt_k=3,
                num_sub_heads=1, input_sz=200, mode="IID", batchnorm_track=True, half_T_side_dense=10,
                lr=1e-5, lamb_A=1.0, lamb_B=1.5, out_root="/scratch/shared/slow/xuji/iid_private",
                epoch_acc=[0.41, 0.6509], restart=False, dataloader_batch_sz=None)
COCO3 = dict(POTSDAM3, dataset="Coco164kCuratedFew", using_IR=False, no_sobel=False, in_channels=5, output_k_A=15,
             input_sz=128)
MNIST = dict(arch="ClusterNet6cTwoHead", dataset="MNIST", in_channels=1, output_k_A=50, output_k_B=10, gt_k=10,
             num_sub_heads=5, input_sz=24, tf1_crop_sz=20, mode="IID", batchnorm_track=False)


def _py2_pickle(fields):
    """The bytes Python 2's ``pickle.dumps(namespace, 2)`` writes: NEWOBJ of argparse.Namespace, BUILD with
    a dict whose strings are Python 2 ``str`` (SHORT_BINSTRING, bytes in latin-1)."""
    def value(v):
        if v is None:
            return b"N"
        if isinstance(v, bool):
            return b"\x88" if v else b"\x89"
        if isinstance(v, int):
            return b"J" + struct.pack("<i", v)
        if isinstance(v, float):
            return b"G" + struct.pack(">d", v)
        if isinstance(v, str):
            raw = v.encode("latin1")
            return b"U" + bytes([len(raw)]) + raw
        return b"](" + b"".join(value(x) for x in v) + b"e"  # list: EMPTY_LIST, MARK, items, APPENDS
    items = b"".join(value(k) + value(v) for k, v in fields.items())
    return b"\x80\x02cargparse\nNamespace\n)\x81}(" + items + b"ub."


def write_model_dir(folder, fields, py2=False, torch040=False, seed=0):
    """An original model folder: config.pickle and best_net.pytorch (legacy format, ``module.`` keys);
    returns the network the weights came from (eval mode)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = _py2_pickle(fields) if py2 else pickle.dumps(argparse.Namespace(**fields), protocol=2)
    (folder / "config.pickle").write_bytes(data)
    torch.manual_seed(seed)
    ring = {"border_ring": True} if fields["arch"].startswith("Segmentation") else {}
    net = build(fields["arch"], in_channels=fields["in_channels"], input_sz=fields["input_sz"],
                output_k_A=fields["output_k_A"], output_k_B=fields["output_k_B"],
                num_sub_heads=fields.get("num_sub_heads", fields.get("num_heads")),
                batchnorm_track=fields["batchnorm_track"], **ring)
    for m in net.modules():  # trained-looking BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d) and m.track_running_stats:
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    state = {"module." + k: v for k, v in net.state_dict().items()
             if not (torch040 and k.endswith("num_batches_tracked"))}
    torch.save(state, folder / "best_net.pytorch", _use_new_zipfile_serialization=False)
    return net.eval()


def test_py2_config_pickle_reads_as_a_namespace(tmp_path):
    fields = dict(POTSDAM3, out_root="/users/xuji/r\xe9sultats")
    (tmp_path / "config.pickle").write_bytes(_py2_pickle(fields))
    config = read_original_config(str(tmp_path / "config.pickle"))
    assert isinstance(config, argparse.Namespace) and vars(config) == fields


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "config.pickle"
    path.write_bytes(b"\x80\x02cos\nsystem\nU\x04echo\x85R.")  # os.system("echo")
    with pytest.raises(ValueError, match=r"config.pickle is not an original IIC config.pickle: .*os.system"):
        read_original_config(str(path))


def test_potsdam_import_equals_the_weights_loaded_by_hand(tmp_path):
    fields = {("num_heads" if k == "num_sub_heads" else k): v for k, v in POTSDAM3.items()}  # the 2018 name
    net = write_model_dir(tmp_path / "545", fields, py2=True, torch040=True)
    import_original(str(tmp_path / "545"), str(tmp_path / "run"))
    model = load_run(str(tmp_path / "run"), device="cpu")
    assert model.config.dataset == "potsdam3" and model.config.border_ring and model.spec.raw_channels == 4
    x = torch.rand(2, 4, 48, 64, generator=torch.Generator().manual_seed(0))  # R, G, B, IR; no Sobel
    with torch.no_grad():
        expected = net(x, head="B")[0]
    torch.testing.assert_close(model.segment(x, probs=True), expected, atol=1e-5, rtol=1e-4)
    ring = expected[0, :, 0, 0]  # the original head's zero-logit ring reaches the corner: uniform there
    torch.testing.assert_close(ring, torch.full((3,), 1 / 3), atol=1e-6, rtol=0)


def test_coco_import_reads_bgr_with_sobel(tmp_path):
    net = write_model_dir(tmp_path / "555", COCO3)
    assert main(["import-original", str(tmp_path / "555"), "--out", str(tmp_path / "run")]) == 0
    model = load_run(str(tmp_path / "run"), device="cpu")
    assert model.config.dataset == "cocostuff3" and model.spec.bgr
    rgb = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # the original: cv2's B, G, R, then Sobel of its grey, appended
        expected = net(sobel_process(rgb.flip(1), 3, True), head="B")[0]
    torch.testing.assert_close(model.segment(rgb, probs=True), expected, atol=1e-5, rtol=1e-4)


def test_mnist_import_clusters_like_the_weights_loaded_by_hand(tmp_path):
    net = write_model_dir(tmp_path / "685", MNIST)
    import_original(str(tmp_path / "685"), str(tmp_path / "run"))
    model = load_run(str(tmp_path / "run"), device="cpu", subhead=3)
    pairs = clustering_preset("mnist", crop1=20, input_size=24)
    assert model.config.dataset == "mnist" and model.config.num_sub_heads == 5
    x = torch.rand(6, 1, 20, 20, generator=torch.Generator().manual_seed(2))  # at the eval crop side
    with torch.no_grad():  # no BatchNorm running statistics: the batch is the same on both sides
        expected = net(pairs.eval_transform(x), head="B")[3]
    torch.testing.assert_close(model.cluster(x, probs=True), expected, atol=1e-5, rtol=1e-4)


def test_bad_model_folders(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="config.pickle not found"):
        import_original(str(tmp_path), str(tmp_path / "run"))
    write_model_dir(tmp_path / "m", dict(POTSDAM3, output_k_B=6))
    (tmp_path / "m" / "config.pickle").write_bytes(pickle.dumps(argparse.Namespace(**POTSDAM3), protocol=2))
    with pytest.raises(ValueError, match=r"does not fit SegmentationNet10aTwoHead.*head_B.heads.0.0.weight"):
        import_original(str(tmp_path / "m"), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # nothing written
    (tmp_path / "m" / "config.pickle").write_bytes(
        pickle.dumps(argparse.Namespace(**dict(POTSDAM3, dataset="Cityscapes")), protocol=2))
    assert main(["import-original", str(tmp_path / "m"), "--out", str(tmp_path / "run")]) == 2
    assert "the original dataset 'Cityscapes' has no iic_fast preset" in capsys.readouterr().err
