"""iic_fast.eval vs scikit-learn: confusion matrices, matching, accuracy, NMI, ARI, mIoU, sub-heads."""
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from iic_fast.eval import (
    ConfusionAccumulator,
    accuracy,
    apply_mapping,
    ari,
    confusion_matrix,
    evaluate,
    hungarian_match,
    many_to_one_match,
    mean_iou,
    nmi,
    remap_confusion,
    select_subheads,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _rand(seed, n, k_pred, k_true, shape=None):
    g = torch.Generator().manual_seed(seed)
    shape = shape or (n,)
    return (torch.randint(0, k_pred, shape, generator=g),
            torch.randint(0, k_true, shape, generator=g))


@pytest.mark.parametrize("device", DEVICES)
def test_confusion_matches_sklearn_any_shape(device):
    pred, target = _rand(0, 0, 5, 4, shape=(3, 7, 11))
    conf = confusion_matrix(pred.to(device), target.to(device), 5, 4)
    assert conf.dtype == torch.int64 and conf.shape == (5, 4) and conf.device.type == device
    sk = skm.confusion_matrix(pred.flatten(), target.flatten(), labels=range(5))[:, :4]
    # sklearn rows are its first argument: rows = pred here.
    assert np.array_equal(conf.cpu().numpy(), sk)


def test_confusion_mask_and_negative_targets():
    pred, target = _rand(1, 500, 3, 3)
    mask = torch.rand(500, generator=torch.Generator().manual_seed(2)) > 0.3
    target[::7] = -1
    pred_bad = pred.clone()
    pred_bad[~mask] = 99  # masked-out values are never looked at
    conf = confusion_matrix(pred_bad, target, 3, 3, mask=mask)
    keep = mask & (target >= 0)
    ref = skm.confusion_matrix(pred[keep], target[keep], labels=range(3))
    assert np.array_equal(conf.numpy(), ref)
    assert int(conf.sum()) == int(keep.sum())
    # Integer 0/1 masks and numpy inputs behave the same.
    conf2 = confusion_matrix(pred_bad.numpy(), target.numpy(), 3, 3, mask=mask.numpy().astype(np.uint8))
    assert torch.equal(conf, conf2)


@pytest.mark.parametrize("device", DEVICES)
def test_accumulator_equals_one_shot(device):
    pred, target = _rand(3, 1000, 6, 6)
    mask = torch.arange(1000) % 5 != 0
    acc = ConfusionAccumulator(6, 6, device=device)
    for i in range(0, 1000, 128):
        acc.update(pred[i:i + 128].to(torch.uint8), target[i:i + 128], mask[i:i + 128])
    ref = confusion_matrix(pred, target, 6, 6, mask)
    assert torch.equal(acc.compute().cpu(), ref)
    assert acc.total == int(mask.sum())
    acc.reset()
    assert acc.total == 0


def test_bad_inputs_raise_named_errors():
    p, t = torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="pred and target"):
        confusion_matrix(p, torch.zeros(5, dtype=torch.long), 2, 2)
    with pytest.raises(ValueError, match="mask"):
        confusion_matrix(p, t, 2, 2, mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="pred must hold integer labels"):
        confusion_matrix(p.float(), t, 2, 2)
    with pytest.raises(TypeError, match="num_pred must be an int"):
        confusion_matrix(p, t, 2.0, 2)
    with pytest.raises(TypeError, match="conf must hold counts"):
        nmi(torch.zeros(2, 2, dtype=torch.complex64))
    with pytest.raises(ValueError, match="num_pred"):
        confusion_matrix(p, t, 0, 2)
    with pytest.raises(ValueError, match="num_true"):
        confusion_matrix(p, t, 2, -1)
    with pytest.raises(ValueError, match="pred"):
        confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 1]), 2, 2)
    with pytest.raises(ValueError, match="target"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 2]), 2, 2)
    with pytest.raises(ValueError, match="conf"):
        hungarian_match(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="conf"):
        nmi(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="conf"):
        ari(-torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="mapping"):
        accuracy(torch.ones(3, 3, dtype=torch.long), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="fit_conf"):
        evaluate(torch.ones(3, 3, dtype=torch.long), fit_conf=torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="match"):
        evaluate(torch.ones(3, 3, dtype=torch.long), match="greedy")
    with pytest.raises(ValueError, match="losses"):
        select_subheads([0.1], [torch.ones(2, 2, dtype=torch.long)] * 2)


@pytest.mark.parametrize("seed,k_pred,k_true,n", [(0, 4, 4, 300), (1, 10, 3, 1000), (2, 2, 7, 50),
                                                  (3, 15, 15, 5000), (4, 1, 3, 40)])
def test_nmi_ari_match_sklearn(seed, k_pred, k_true, n):
    pred, target = _rand(seed, n, k_pred, k_true)
    conf = confusion_matrix(pred, target, k_pred, k_true)
    assert nmi(conf) == pytest.approx(skm.normalized_mutual_info_score(target, pred), abs=1e-12)
    assert ari(conf) == pytest.approx(skm.adjusted_rand_score(target, pred), abs=1e-12)


@pytest.mark.parametrize("pred,target", [([0, 0, 0], [1, 1, 1]), ([0, 1, 2, 3], [0, 0, 0, 0]),
                                         ([0, 0, 1, 1], [0, 1, 0, 1]), ([0, 0, 1, 1], [1, 1, 0, 0]),
                                         ([], [])])
def test_nmi_ari_edge_cases(pred, target):
    conf = confusion_matrix(torch.tensor(pred, dtype=torch.long), torch.tensor(target, dtype=torch.long), 4, 4)
    assert nmi(conf) == pytest.approx(skm.normalized_mutual_info_score(target, pred))
    assert ari(conf) == pytest.approx(skm.adjusted_rand_score(target, pred))


def test_ari_no_overflow_for_huge_counts():
    conf = torch.tensor([[3_000_000_000, 10], [20, 2_000_000_000]], dtype=torch.long)
    a = ari(conf)
    assert 0.99 < a <= 1.0 and math.isfinite(a)


def test_permuted_perfect_prediction_gives_one():
    target = torch.randint(0, 6, (2000,), generator=torch.Generator().manual_seed(5))
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    pred = perm[target]
    res = evaluate(confusion_matrix(pred, target, 6, 6))
    assert res.match == "hungarian"
    assert res.acc == 1.0 and res.miou == 1.0
    assert res.nmi == pytest.approx(1.0) and res.ari == pytest.approx(1.0)
    assert torch.equal(apply_mapping(pred, res.mapping), target)
    assert torch.equal(res.mapping[perm], torch.arange(6))


def test_hungarian_accuracy_is_optimal_bruteforce():
    from itertools import permutations
    pred, target = _rand(6, 400, 4, 4)
    conf = confusion_matrix(pred, target, 4, 4)
    best = max(sum(int(conf[p, m[p]]) for p in range(4)) for m in permutations(range(4))) / 400
    assert accuracy(conf, hungarian_match(conf)) == pytest.approx(best)
    # ... and equals the fraction of samples whose remapped prediction is right.
    mapped = apply_mapping(pred, hungarian_match(conf))
    assert accuracy(conf, hungarian_match(conf)) == pytest.approx(float((mapped == target).float().mean()))


def test_miou_matches_sklearn_jaccard():
    pred, target = _rand(7, 3000, 5, 5)
    conf = confusion_matrix(pred, target, 5, 5)
    mapping = hungarian_match(conf)
    mapped = apply_mapping(pred, mapping)
    ref = skm.jaccard_score(target, mapped, average="macro")
    assert mean_iou(conf, mapping) == pytest.approx(ref, abs=1e-12)


def test_many_to_one_overclustering_fit_on_assignment_applied_to_test():
    g = torch.Generator().manual_seed(8)
    owner = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 2, 1])  # 10 clusters -> 3 classes

    def make(n):
        pred = torch.randint(0, 10, (n,), generator=g)
        target = owner[pred].clone()
        noise = torch.rand(n, generator=g) < 0.1
        target[noise] = torch.randint(0, 3, (int(noise.sum()),), generator=g)
        return pred, target

    (pa, ta), (pt, tt) = make(5000), make(3000)
    fit, test = confusion_matrix(pa, ta, 10, 3), confusion_matrix(pt, tt, 10, 3)
    mapping = many_to_one_match(fit)
    assert torch.equal(mapping, owner)
    res = evaluate(test, fit_conf=fit)
    assert res.match == "many_to_one" and torch.equal(res.mapping, owner)
    ref_acc = float((owner[pt] == tt).float().mean())
    assert res.acc == pytest.approx(ref_acc)
    assert res.miou == pytest.approx(skm.jaccard_score(tt, owner[pt], average="macro"))
    assert res.nmi == pytest.approx(skm.normalized_mutual_info_score(tt, pt))
    assert remap_confusion(test, mapping).sum() == 3000


def test_many_to_one_ties_go_to_first_class():
    conf = torch.tensor([[2, 2, 1], [0, 0, 0], [0, 3, 3]])
    assert many_to_one_match(conf).tolist() == [0, 0, 1]


def test_subhead_selection_by_loss_and_by_accuracy():
    target = torch.randint(0, 3, (600,), generator=torch.Generator().manual_seed(9))
    perfect = (target + 1) % 3
    noisy = perfect.clone()
    noisy[::3] = 0
    confs = [confusion_matrix(p, target, 3, 3) for p in (noisy, perfect, noisy)]
    rep = select_subheads(torch.tensor([0.5, 0.7, float("nan")]), confs)
    assert rep.by_loss == 0 and rep.by_acc == 1
    assert rep.best.acc == 1.0 and rep.selected.acc < 1.0
    d = rep.to_dict()
    assert d["acc_by_acc"] == 1.0 and d["by_loss"] == 0 and len(d["accs"]) == 3
    assert d["worst_acc"] == pytest.approx(min(rep.accs))
    # With assignment data, by_acc follows the assignment accuracy.
    rep2 = select_subheads([1.0, 0.2, 0.3], confs, fit_confs=[confs[1], confs[0], confs[0]])
    assert rep2.by_loss == 1 and rep2.by_acc == 0
