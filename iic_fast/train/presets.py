"""The named presets: the paper's runs (each with the original model it reproduces) and the embedded sets'
defaults. Field semantics: ``config.py``; measurements behind the embedded presets: ``docs/results.md``.
"""
from __future__ import annotations

from typing import Any, Dict, List

from .config import TrainConfig


def _paper(**kw: Any) -> Dict[str, Any]:
    """Settings common to every paper run (constant-lr Adam is the dataclass default): BatchNorm
    running statistics (``--batchnorm_track``) and the uncollapsed loss."""
    return {"batchnorm_track": True, "collapsed": False, **kw}


# Segmentation (reference section 4.1/4.2): SegmentationNet10a(TwoHead), uncollapsed loss, BN track,
# flip 0.5, sub-heads 1; the paper-era one-head-per-epoch schedule; num_epochs 4800 is an upper bound.
# border_ring: the original head's 1x1 conv with padding 1 (a ring of zero logits before upsampling).
_SEG_IID = dict(arch="SegmentationNet10aTwoHead", head_schedule="alternate", max_epochs=4800, border_ring=True)
_SEG_IIDP = dict(arch="SegmentationNet10a", head_schedule="single", output_k_A=None, mode="iid+",
                 max_epochs=4800, border_ring=True)
_POTSDAM = dict(input_size=200, d=10)
_COCO = dict(input_size=128, d=10)
# The original reads COCO with cv2 (BGR: its grey channel, hence Sobel, weights B and R the other way
# round) and its COCO-Stuff-3 labels count unlabelled pixels as sky (mask on): both reproduced.
_BGR = {"channel_order": "bgr"}
_COCO3_DATA = {"channel_order": "bgr", "unlabelled_as_sky": True}
# COCO-Stuff-27 / Cityscapes-27 (the benchmarks of PiCIE and STEGO, where IIC is a baseline): their protocol
# resizes the shorter side to 320 and scores 320x320 centre crops of the validation images. IIC's settings
# for them are not in PiCIE's or STEGO's public code (the repositories hold no IIC baseline), so these take
# the cocostuff15 preset's (lr, batch, lambdas, d, schedule) with k_A = 3 k_B as there (45 / 15); RGB order.
_BENCH27 = dict(input_size=128, d=10, gt_k=27, output_k_A=81, output_k_B=27, lr=1e-4, batch_size=60,
                dataset_options={"short_side": 320, "eval_size": 320})
# Clustering (section 4.3): Sobel (except MNIST), 5 sub-heads; repeats = num_dataloaders.
_CLU = dict(num_sub_heads=5, d=0)

PRESETS: Dict[str, Dict[str, Any]] = {
    # --- embedded sets (no files): the defaults of a fresh machine
    # Textures-3: SmallSegNetTwoHead (A 12 / B 3), batch 16, heads alternating every step (epoch_steps 1).
    # n_train 4096 mosaics and lr 1e-3: many distinct mosaics beat many passes over few. Grey input alone (no
    # Sobel): its runs end ~3 points higher, but one start in three settles with two textures merged, so two whole
    # runs train at once (one thread each) and the lower evaluation-mode loss wins. 300 steps: the accuracy is flat
    # from there on; a slower machine gets a shorter cosine, planned from its measured pace in max_minutes
    # (iic_fast/train/schedule.py). Measurements: docs/results.md
    "textures3": dict(d=8, epoch_steps=1, eval_every=100, lr_schedule="cosine", lr=1e-3, n_train=4096,
                      max_steps=300, max_minutes=4.75, pairs={"sobel": False}, candidates=2, candidate_steps=0,
                      candidate_jobs=2),
    # Digits: MNIST's schedule (B first, B x2, 5 repeats) on a small net; pairs: milder crops (8x8 digits fill the
    # frame) and +-1 pixel shifts (a digit's position is no cue). Against bad local optima (two digits sharing
    # clusters): 25 main-head sub-heads, the worse half restarted at 1/3 and 2/3 of the run and the final one picked
    # by its evaluation-mode loss; 100 overclusters; lamb_B 1.2 (marginal-entropy weight); a 15-epoch head-A
    # warm-up. Head A keeps the paper's 5 sub-heads (25 made its steps slower); the budget leaves ~15 s of
    # 5 minutes for start-up and plots. A merge that no sub-head escapes is a trunk's: two whole runs train at
    # once (one thread each: this small net uses 2 cores better so) and the lower final loss wins. docs/results.md
    "digits": dict(dataset="digits", gt_k=10, arch="SmallClusterNetTwoHead", output_k_A=100, output_k_B=10,
                   num_sub_heads=25, num_sub_heads_A=5, repeats=5, batch_size=350, lr=1e-3, lamb_B=1.2, d=0,
                   head_schedule="B_then_A", head_B_epochs=2, head_A_warmup_epochs=15, subhead_restarts=[0.33, 0.66],
                   selection_passes=2, max_steps=1500, max_minutes=4.75, candidates=2, candidate_steps=0,
                   candidate_jobs=2,
                   pairs={"crop2": [7, 8], "rot_deg": 8.0, "jitter": [0.1, 0.1, 0.0, 0.0], "shift": 1}),
    # --- segmentation, fully unsupervised (Table 4)
    "potsdam3": _paper(**_SEG_IID, **_POTSDAM, dataset="potsdam3", gt_k=3, output_k_A=24, output_k_B=3,
                       lr=1e-5, lamb_A=1.0, lamb_B=1.5, batch_size=75),  # model 545: 65.1%
    "potsdam6": _paper(**_SEG_IID, input_size=200, d=5, dataset="potsdam6", gt_k=6, output_k_A=36,
                       output_k_B=6, lr=1e-6, batch_size=60),  # model 544: 45.4%
    "cocostuff3": _paper(**_SEG_IID, **_COCO, dataset="cocostuff3", gt_k=3, output_k_A=15, output_k_B=3,
                         lr=1e-4, lamb_A=1.0, lamb_B=1.5, batch_size=120,
                         dataset_options=_COCO3_DATA),  # model 555: 72.3%
    "cocostuff15": _paper(**_SEG_IID, **_COCO, dataset="cocostuff15", gt_k=15, output_k_A=45,
                          output_k_B=15, lr=1e-4, batch_size=60, dataset_options=_BGR),  # model 512: 27.7%
    # --- later benchmarks with IIC as a baseline (PiCIE, STEGO): accuracy and mIoU on 27 classes
    "cocostuff27": _paper(**_SEG_IID, **_BENCH27, dataset="cocostuff27"),
    "cityscapes27": _paper(**_SEG_IID, **_BENCH27, dataset="cityscapes27"),
    # --- segmentation, semi-supervised overclustering (IID+)
    "potsdam3-iidplus": _paper(**_SEG_IIDP, **_POTSDAM, dataset="potsdam3", gt_k=3, output_k_B=9,
                               lr=1e-5, batch_size=75),  # model 482
    "potsdam6-iidplus": _paper(**_SEG_IIDP, **_POTSDAM, dataset="potsdam6", gt_k=6, output_k_B=24,
                               lr=1e-5, batch_size=60),  # model 487
    "cocostuff3-iidplus": _paper(**_SEG_IIDP, **_COCO, dataset="cocostuff3", gt_k=3, output_k_B=15,
                                 lr=1e-4, batch_size=180, dataset_options=_COCO3_DATA),  # model 496
    "cocostuff15-iidplus": _paper(**_SEG_IIDP, **_COCO, dataset="cocostuff15", gt_k=15, output_k_B=45,
                                  lr=1e-4, batch_size=90, dataset_options=_BGR),  # model 521
    # --- clustering, fully unsupervised (Table 1); IID trains and tests on train + test. The original
    # evaluates in batches of batch_sz images: without BatchNorm running statistics (CIFAR10, MNIST) the
    # predictions depend on it. STL10 also evaluates in training mode first (double_eval).
    "stl10": _paper(**_CLU, dataset="stl10", gt_k=10, arch="ClusterNet5gTwoHead", output_k_A=70,
                    output_k_B=10, lr=1e-4, batch_size=700, repeats=5, head_schedule="A_then_B",
                    eval_batch_size=700, double_eval=True, max_epochs=2000),  # model 569: 59.6%
    "cifar10": _paper(**_CLU, dataset="cifar10", gt_k=10, arch="ClusterNet5gTwoHead", output_k_A=70,
                      output_k_B=10, lr=1e-4, batch_size=660, repeats=3, head_schedule="A_then_B",
                      head_B_epochs=2, batchnorm_track=False, eval_batch_size=660,
                      max_epochs=2000),  # model 640: 61.7%
    "cifar100-20": _paper(**_CLU, dataset="cifar100_20", gt_k=20, arch="ClusterNet5gTwoHead",
                          output_k_A=140, output_k_B=20, lr=1e-4, batch_size=1000, repeats=5,
                          head_schedule="B_then_A", eval_batch_size=1000, max_epochs=2000),  # model 579: 25.7%
    "mnist": _paper(**_CLU, dataset="mnist", gt_k=10, arch="ClusterNet6cTwoHead", output_k_A=50,
                    output_k_B=10, lr=1e-4, batch_size=700, repeats=5, head_schedule="B_then_A",
                    head_B_epochs=2, batchnorm_track=False, eval_batch_size=700,
                    max_epochs=3200),  # model 685: 99.2%
    # --- clustering, semi-supervised overclustering (IID+): train (+unlabelled), assign on train, test
    "stl10-iidplus": _paper(**_CLU, dataset="stl10", mode="iid+", gt_k=10, arch="ClusterNet5g",
                            output_k_A=None, output_k_B=140, head_schedule="single", lr=1e-4,
                            batch_size=1400, repeats=5, max_epochs=3200),  # model 653
    "cifar10-iidplus": _paper(**_CLU, dataset="cifar10", mode="iid+", gt_k=10, arch="ClusterNet5g",
                              output_k_A=None, output_k_B=140, head_schedule="single", lr=1e-4,
                              batch_size=1320, repeats=3, max_epochs=3200),  # model 652
    "cifar100-20-iidplus": _paper(**_CLU, dataset="cifar100_20", mode="iid+", gt_k=20, arch="ClusterNet6c",
                                  output_k_A=None, output_k_B=280, head_schedule="single", lr=1e-4,
                                  batch_size=2800, repeats=5, pairs={"input_size": 24, "include_rgb": True},
                                  max_epochs=3200),  # model 654
    "mnist-iidplus": _paper(**_CLU, dataset="mnist", mode="iid+", gt_k=10, arch="ClusterNet6c",
                            output_k_A=None, output_k_B=25, head_schedule="single", lr=1e-4,
                            batch_size=350, repeats=5, max_epochs=3200),  # model 665
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset (see ``PRESETS``) with ``overrides`` applied and validated."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choices: {', '.join(PRESETS)}")
    return TrainConfig.from_dict({**PRESETS[name], "preset": name, **overrides})


def preset_table() -> List[str]:
    """One line per preset: name, dataset, mode, arch, k_A/k_B, lr, batch, d (for ``--help``)."""
    rows = []
    for name in PRESETS:
        c = preset(name)
        k = f"{c.output_k_A}/{c.output_k_B}" if c.two_head else f"{c.output_k_B}"
        rows.append(f"{name:20s} {c.dataset:12s} {c.mode:5s} {c.arch:26s} k {k:7s} lr {c.lr:g} "
                    f"batch {c.batch_size}" + (f" d {c.d}" if c.task == "segmentation" else ""))
    return rows
