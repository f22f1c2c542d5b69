"""mean_ci, evaluate() with a small nearest-centroid classifier, and default_device()."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from metalearn_lite import EvalResult, FewShotClassifier, default_device, evaluate, mean_ci
from metalearn_lite.fewshot import FewShotMixin, check_task


class NearestCentroid(FewShotMixin):
    """Prototype classifier on raw pixels: scores are negative squared distances to class means."""

    def logits(self, support_x, support_y, query_x):
        classes, targets = check_task(support_x, support_y, query_x)
        s = support_x.flatten(1)
        sums = torch.zeros(len(classes), s.shape[1], dtype=s.dtype).index_add_(0, targets, s)
        counts = torch.bincount(targets, minlength=len(classes)).to(s.dtype).unsqueeze(1)
        return -torch.cdist(query_x.flatten(1), sums / counts) ** 2


# ---------------------------------------------------------------- mean_ci


def test_mean_ci_by_hand():
    mean, half = mean_ci([0.0, 1.0, 0.0, 1.0])
    s = math.sqrt(sum((v - 0.5) ** 2 for v in [0, 1, 0, 1]) / 3)
    assert mean == pytest.approx(0.5)
    assert half == pytest.approx(stats.t.ppf(0.975, 3) * s / math.sqrt(4), rel=1e-12)
    assert half == pytest.approx(0.9187, abs=1e-4)


def test_mean_ci_other_confidence_and_tensor_input():
    values = torch.tensor([0.2, 0.4, 0.9])
    mean, half = mean_ci(values, confidence=0.9)
    s = float(torch.tensor([0.2, 0.4, 0.9], dtype=torch.float64).std())
    assert mean == pytest.approx(0.5)
    assert half == pytest.approx(stats.t.ppf(0.95, 2) * s / math.sqrt(3), rel=1e-6)


def test_mean_ci_600_values_close_to_normal():
    values = torch.rand(600, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean, half = mean_ci(values)
    s = float(values.std())
    assert mean == pytest.approx(float(values.mean()))
    assert half == pytest.approx(1.96 * s / math.sqrt(600), rel=0.01)
    assert half > 1.96 * s / math.sqrt(600)  # t is a little wider than the normal


def test_mean_ci_constant_and_single():
    assert mean_ci([0.7] * 5) == (pytest.approx(0.7), 0.0)
    mean, half = mean_ci([0.3])
    assert mean == pytest.approx(0.3) and math.isinf(half)


def test_mean_ci_empty():
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci([])
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci(torch.empty(0))


def test_mean_ci_bad_confidence():
    with pytest.raises(ValueError, match="between 0 and 1"):
        mean_ci([0.1, 0.2], confidence=95)


# ---------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def result(test_split) -> EvalResult:
    return evaluate(NearestCentroid(), test_split.images, ways=5, shots=1, queries=5, episodes=600, seed=0)


def test_evaluate_result(result):
    assert isinstance(result, EvalResult)
    assert (result.ways, result.shots, result.queries) == (5, 1, 5)
    assert tuple(result.accuracies.shape) == (600,)
    assert float(result.accuracies.min()) >= 0.0 and float(result.accuracies.max()) <= 1.0
    # accuracies of 5 queries per task are multiples of 1/25
    assert torch.allclose(result.accuracies * 25, (result.accuracies * 25).round())
    assert result.mean > 0.3  # chance is 0.2
    assert result.mean < 1.0
    mean, half = mean_ci(result.accuracies)
    assert result.mean == pytest.approx(mean) and result.ci95 == pytest.approx(half)
    assert 0 < result.ci95 < 0.05


def test_evaluate_str(result):
    text = str(result)
    assert "±" in text
    assert f"{100 * result.mean:.2f}" in text
    assert "5-way 1-shot" in text and "600 episodes" in text


def test_evaluate_deterministic_by_seed(test_split):
    a = evaluate(NearestCentroid(), test_split.images, ways=5, shots=1, queries=3, episodes=50, seed=4)
    b = evaluate(NearestCentroid(), test_split.images, ways=5, shots=1, queries=3, episodes=50, seed=4)
    c = evaluate(NearestCentroid(), test_split.images, ways=5, shots=1, queries=3, episodes=50, seed=5)
    assert torch.equal(a.accuracies, b.accuracies)
    assert not torch.equal(a.accuracies, c.accuracies)


def test_evaluate_more_shots_help(test_split, result):
    five = evaluate(NearestCentroid(), test_split.images, ways=5, shots=5, queries=5, episodes=200, seed=0)
    assert five.mean > result.mean


def test_evaluate_rejects_non_classifiers(test_split):
    class OnlyLogits:
        def logits(self, support_x, support_y, query_x):
            return torch.zeros(len(query_x), 5)

    for obj in (object(), OnlyLogits(), lambda sx, sy, qx: sy):
        with pytest.raises(ValueError, match=r"logits\(support_x, support_y, query_x\) and predict"):
            evaluate(obj, test_split.images, episodes=2)


def test_evaluate_needs_queries(test_split):
    with pytest.raises(ValueError, match="queries >= 1"):
        evaluate(NearestCentroid(), test_split.images, queries=0, episodes=2)


def test_classifier_satisfies_protocol():
    assert isinstance(NearestCentroid(), FewShotClassifier)
    assert not isinstance(object(), FewShotClassifier)


def test_predict_returns_support_label_values():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 10, generator=g), torch.rand(2, 10, generator=g) + 5
    support_x = torch.cat([a, b])
    support_y = torch.tensor([3, 3, 7, 7])
    query_x = torch.cat([a + 0.01, b - 0.01, a[:1]])
    pred = NearestCentroid().predict(support_x, support_y, query_x)
    assert set(pred.tolist()) <= {3, 7}
    assert pred.tolist() == [3, 3, 7, 7, 3]
    logits = NearestCentroid().logits(support_x, support_y, query_x)
    assert tuple(logits.shape) == (5, 2)  # column j is the j-th smallest label: 3 then 7
    assert logits[0, 0] > logits[0, 1] and logits[2, 1] > logits[2, 0]
    # unordered labels give the same answer
    perm = torch.tensor([2, 0, 3, 1])
    assert NearestCentroid().predict(support_x[perm], support_y[perm], query_x).tolist() == [3, 3, 7, 7, 3]


def test_check_task_relabels():
    classes, targets = check_task(torch.rand(5, 2), torch.tensor([9, 2, 9, 4, 2]), torch.rand(1, 2))
    assert classes.tolist() == [2, 4, 9]
    assert targets.tolist() == [2, 0, 2, 1, 0]


# ---------------------------------------------------------------- devices


def test_default_device_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")


def test_default_device_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")


def test_default_device_on_this_machine():
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert default_device().type == "cuda"
    else:
        assert default_device().type in {"cpu", "mps"}
