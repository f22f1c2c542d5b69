"""Lesson 03's exercise checks: right answers pass, typical wrong answers fail with a useful message."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import check_fails as _fails
from conftest import check_passes

from metalearn_lite.algorithms.protonet import ProtoNet
from metalearn_lite.distances import squared_euclidean
from metalearn_lite.episodes import EpisodeSampler
from metalearn_lite.fewshot import class_means as prototypes
from metalearn_lite.lessons.lesson03 import (
    CheckFailed,
    best_centres,
    check_attention_classifier,
    check_boundary,
    check_logits,
    check_protonet_logits,
    check_prototypes,
    check_prototypes_and_logits,
    compare_classifiers,
    public_command,
)
from metalearn_lite.models import Conv4

# ----------------------------------------------------------------------------- right answers


def prototypes_loop(z, targets, ways):
    return torch.stack([torch.stack([z[t, targets[t] == c].mean(0) for c in range(ways)]) for t in range(z.shape[0])])


def prototypes_scatter(z, targets, ways):
    sums = torch.zeros(z.shape[0], ways, z.shape[2]).index_put_(
        (torch.arange(z.shape[0]).unsqueeze(1).expand_as(targets), targets), z, accumulate=True
    )
    counts = F.one_hot(targets, ways).sum(1).unsqueeze(-1)
    return sums / counts


def logits_broadcast(zq, protos):
    return -((zq.unsqueeze(2) - protos.unsqueeze(1)) ** 2).sum(-1)


def logits_linear(zq, protos):  # -||z||^2 dropped: same softmax, accepted
    return 2 * zq @ protos.transpose(1, 2) - (protos**2).sum(-1).unsqueeze(1)


@pytest.mark.parametrize("fn", [prototypes, prototypes_loop, prototypes_scatter])
def test_prototypes_accepts_right_answers(fn):
    check_passes(check_prototypes, fn)


@pytest.mark.parametrize(
    "fn", [lambda zq, p: -squared_euclidean(zq, p), logits_broadcast, lambda zq, p: -torch.cdist(zq, p) ** 2]
)
def test_logits_accepts_right_answers(fn):
    check_passes(check_logits, fn)


def test_logits_accepts_linear_form_and_says_so():
    assert "same for every class" in check_passes(check_logits, logits_linear)


# ----------------------------------------------------------------------------- wrong prototypes



def test_prototypes_sum_instead_of_mean():
    _fails(check_prototypes, lambda z, y, n: F.one_hot(y, n).float().transpose(1, 2) @ z, "sums", "divide")


def test_prototypes_positional_reshape():
    def by_position(z, y, n):
        return z.reshape(z.shape[0], n, -1, z.shape[-1]).mean(2)

    _fails(check_prototypes, by_position, "sorted by class", "labels")


def test_prototypes_equal_count_assumption():
    def equal_counts(z, y, n):
        return (F.one_hot(y, n).float().transpose(1, 2) @ z) / (z.shape[1] // n)

    _fails(check_prototypes, equal_counts, "own count")


def test_prototypes_whole_support_mean():
    _fails(check_prototypes, lambda z, y, n: z.mean(1, keepdim=True).expand(-1, n, -1), "whole support set")


@pytest.mark.parametrize(
    ("fn", "word"),
    [
        (lambda z, y, n: prototypes(z, y, n)[0], "task dimension"),
        (lambda z, y, n: prototypes(z, y, n).transpose(1, 2), "swapped"),
        (lambda z, y, n: z.mean(1), "all support examples"),
        (lambda z, y, n: None, "None"),
        (lambda z, y, n: prototypes(z, y, n).tolist(), "torch.Tensor"),
    ],
)
def test_prototypes_wrong_shape_or_type(fn, word):
    _fails(check_prototypes, fn, word)


def test_prototypes_detached():
    _fails(check_prototypes, lambda z, y, n: prototypes(z.detach(), y, n), "gradient")


def test_prototypes_reader_exception_is_reported(capsys):
    def broken(z, y, n):
        raise IndexError("oops")

    _fails(check_prototypes, broken, "IndexError", "oops")
    assert check_prototypes(broken) is None  # non-strict: printed, not raised
    printed = capsys.readouterr().out
    assert printed.startswith("Not yet:") and "IndexError" in printed and "oops" in printed


# ----------------------------------------------------------------------------- wrong logits


@pytest.mark.parametrize(
    ("fn", "words"),
    [
        (lambda zq, p: squared_euclidean(zq, p), ("larger", "minus the squared distance")),
        (lambda zq, p: -torch.cdist(zq, p), ("plain Euclidean", "squared")),
        (lambda zq, p: torch.cdist(zq, p), ("plain Euclidean", "square them")),
        (lambda zq, p: -0.5 * squared_euclidean(zq, p), ("0.5 times", "temperature")),
        (lambda zq, p: F.normalize(zq, dim=-1) @ F.normalize(p, dim=-1).transpose(1, 2), ("cosine",)),
        (lambda zq, p: zq @ p.transpose(1, 2), ("dot products", "||p_c||^2")),
        (lambda zq, p: -squared_euclidean(zq, p).transpose(1, 2), ("swapped",)),
        (lambda zq, p: -squared_euclidean(zq, p)[0], ("task dimension",)),
        (lambda zq, p: -((zq.unsqueeze(2) - p.unsqueeze(1)) ** 2), ("feature dimension",)),
        (lambda zq, p: -squared_euclidean(zq, p) + torch.arange(p.shape[1]), ("differ from",)),
        (lambda zq, p: -squared_euclidean(zq.detach(), p.detach()), ("gradient",)),
    ],
)
def test_logits_wrong_answers(fn, words):
    _fails(check_logits, fn, *words)


def test_non_strict_prints_not_yet(capsys):
    assert check_logits(lambda zq, p: squared_euclidean(zq, p)) is None
    assert capsys.readouterr().out.startswith("Not yet:")


# ----------------------------------------------------------------------------- the two inside a model


@pytest.fixture(scope="module")
def small_model_and_episode():
    torch.manual_seed(0)
    model = ProtoNet(Conv4(hidden=8)).eval()
    images = torch.rand(12, 6, 1, 28, 28)
    episode = EpisodeSampler(images, ways=3, shots=2, queries=2, seed=0).sample(2)
    return model, episode


def test_protonet_logits_right(small_model_and_episode):
    model, episode = small_model_and_episode
    printed = check_passes(check_protonet_logits, prototypes, lambda zq, p: -squared_euclidean(zq, p), model, episode)
    printed += check_passes(check_protonet_logits, prototypes_loop, logits_linear, model, episode)
    assert "queries right" in printed


def test_protonet_logits_wrong(small_model_and_episode):
    model, episode = small_model_and_episode
    with pytest.raises(CheckFailed, match="check_prototypes and check_logits"):
        check_protonet_logits(prototypes, lambda zq, p: -torch.cdist(zq, p), model, episode, strict=True)


def test_protonet_logits_needs_squared_euclidean_protonet(small_model_and_episode):
    _, episode = small_model_and_episode
    with pytest.raises(ValueError, match="euclidean"):
        check_protonet_logits(prototypes, logits_broadcast, ProtoNet(Conv4(hidden=8), distance="cosine"), episode)


# ----------------------------------------------------------------------------- lesson helpers


def test_public_command_hides_machine_paths():
    cmd = "python -m metalearn_lite train protonet --out /tmp/prov/run1 --save-as data/checkpoints/x.pt"
    want = "python -m metalearn_lite train protonet --out <scratch>/run1 --save-as data/checkpoints/x.pt"
    assert public_command(cmd) == want
    assert public_command("a --out runs/x") == "a --out runs/x"


def test_best_centres_mean_median_direction():
    z = torch.tensor([[1.0, 0.5], [1.5, 1.2], [2.0, 0.8], [1.2, 1.6], [4.5, 1.0]], dtype=torch.float64)
    best = best_centres(z)
    assert torch.allclose(best["squared Euclidean"], z.mean(0), atol=1e-6)
    assert (best["Euclidean"] - z.mean(0)).norm() > 0.1  # the geometric median is not the mean
    unit = F.normalize(z, dim=1).sum(0)
    assert torch.allclose(F.normalize(best["cosine distance"], dim=0), F.normalize(unit, dim=0), atol=1e-5)


def test_prototypes_and_logits_together():
    printed = check_passes(check_prototypes_and_logits, prototypes, logits_broadcast)
    assert printed.count("Correct!") == 2


# ----------------------------------------------------------------------------- derive: the boundary


def boundary_right(pa, pb):
    return 2 * (pa - pb), (pb**2).sum() - (pa**2).sum()


def test_boundary_right_and_scaled():
    check_passes(check_boundary, boundary_right)
    check_passes(check_boundary, lambda pa, pb: tuple(0.5 * v for v in boundary_right(pa, pb)))


@pytest.mark.parametrize(
    ("fn", "word"),
    [
        (lambda pa, pb: None, "returned None"),
        (lambda pa, pb: tuple(-v for v in boundary_right(pa, pb)), "other way"),
        (lambda pa, pb: (2 * (pa - pb), 0.0), "halfway"),
        (lambda pa, pb: (2 * (pa - pb), (pa**2).sum() - (pb**2).sum()), "halfway"),
        (lambda pa, pb: (2 * pa, -(pa @ (pa + pb))), "wrong side"),  # through the midpoint, wrong direction
        (lambda pa, pb: (pa[:1], 0.0), "shape"),
        (lambda pa, pb: pa, "pair"),
    ],
)
def test_boundary_wrong(fn, word):
    _fails(check_boundary, fn, word)


# ----------------------------------------------------------------------------- extend: attention


def attention_right(zs, sy, zq, ways):
    return (-squared_euclidean(zq, zs)).softmax(-1) @ F.one_hot(sy, ways).to(zs.dtype)


def test_attention_right_measures_against_prototypes(small_model_and_episode):
    model, _ = small_model_and_episode
    images = torch.rand(8, 20, 1, 28, 28)
    printed = check_passes(check_attention_classifier, attention_right, model, images, 3)
    assert "prototypes" in printed and "paired difference" in printed


@pytest.mark.parametrize(
    ("fn", "word"),
    [
        (lambda zs, sy, zq, n: None, "returned None"),
        (lambda zs, sy, zq, n: (-squared_euclidean(zq, prototypes(zs, sy, n))).softmax(-1), "ProtoNet's probabilities"),
        (lambda zs, sy, zq, n: (-squared_euclidean(zq, zs)).exp() @ F.one_hot(sy, n).float(), "sum to 1"),
        (lambda zs, sy, zq, n: (-squared_euclidean(zq, zs).sqrt()).softmax(-1) @ F.one_hot(sy, n).float(), "plain"),
        (lambda zs, sy, zq, n: (-squared_euclidean(zq, zs)).softmax(-1)
         @ F.one_hot(torch.arange(zs.shape[1]) % n, n).float().expand(zs.shape[0], -1, -1), "labels"),
        (lambda zs, sy, zq, n: attention_right(zs, sy, zq, n)[0], "shape"),
    ],
)
def test_attention_wrong(small_model_and_episode, fn, word):
    model, _ = small_model_and_episode
    with pytest.raises(CheckFailed, match=word):
        check_attention_classifier(fn, model, torch.rand(8, 20, 1, 28, 28), 2, strict=True)


def test_compare_classifiers_agrees_with_itself(small_model_and_episode):
    model, _ = small_model_and_episode
    from metalearn_lite.lessons.lesson03 import prototype_probs

    r = compare_classifiers(model, prototype_probs, torch.rand(8, 20, 1, 28, 28), episodes=3)
    assert r["difference"][0] == 0 and r["disagree"] == 0 and r["probs"] == r["prototypes"]


def test_plot_history_is_shared_and_labels_what_trained():
    from metalearn_lite.lessons import lesson03, lesson06, plotting

    history = [{"step": s, "loss": 1.0 / s, "acc": 0.1 * s, "val_acc": 0.09 * s, "minutes": 0.5 * s} for s in (1, 2)]
    assert lesson03.plot_history is plotting.plot_history
    fig = plotting.plot_history(history, val_label="val")
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend == ["training episodes", "val"] and fig._suptitle.get_text() == "training took 1.0 minutes"
    legend = [t.get_text() for t in lesson06.plot_history(history).axes[1].get_legend().get_texts()]
    assert legend == ["training batches", "validation episodes"]
    assert plotting.plot_history(history, title="mine")._suptitle.get_text() == "mine"
    with pytest.raises(ValueError, match="no training history"):
        plotting.plot_history([])


# ----------------------------------------------------------------------------- ProtoNet, Matching, Relation on one task


@pytest.fixture(scope="module")
def three_models():
    from metalearn_lite.algorithms import MatchingNet, RelationNet

    torch.manual_seed(0)
    return {
        "protonet": ProtoNet(Conv4(hidden=8)).eval(),
        "matching": MatchingNet(Conv4(hidden=8)).eval(),
        "relation": RelationNet(Conv4(hidden=8, pools=2, flatten=False)).eval(),
    }


def test_class_scores_are_probabilities_or_relation_scores(three_models):
    from metalearn_lite.lessons.lesson03 import class_scores

    sampler = EpisodeSampler(torch.rand(6, 8, 1, 28, 28), ways=3, shots=2, queries=2, seed=1)
    sx, sy, qx, _ = sampler.sample(1).unbatched()
    for name, model in three_models.items():
        s = class_scores(model, sx, sy, qx)
        with torch.no_grad():
            logits = model.logits(sx, sy, qx)
        assert s.shape == (6, 3) and not s.requires_grad
        if name == "relation":
            assert torch.allclose(s, torch.sigmoid(logits))
        else:
            assert torch.allclose(s.sum(-1), torch.ones(6), atol=1e-5)
            assert torch.equal(s.argmax(-1), logits.argmax(-1))
    with torch.no_grad():  # a Matching Network's logits are log-probabilities: the softmax only exponentiates
        assert torch.allclose(class_scores(three_models["matching"], sx, sy, qx),
                              three_models["matching"].logits(sx, sy, qx).exp(), atol=1e-6)


def test_plot_method_scores_reports_what_it_drew(three_models):
    from metalearn_lite.lessons.lesson03 import plot_method_scores

    episode = EpisodeSampler(torch.rand(6, 8, 1, 28, 28), ways=3, shots=2, queries=3, seed=2).sample(1)
    drawn = plot_method_scores(three_models, episode)
    qy = episode.query_y[0].sort().values  # the figure groups the queries by class
    assert len(drawn.figure.axes) == 4  # three panels and the colour bar
    for name, s in drawn.scores.items():
        assert s.shape == (9, 3)
        assert drawn.accuracy[name] == pytest.approx(float((s.argmax(-1) == qy).double().mean()))
        assert drawn.true_score[name] == pytest.approx(float(s.gather(1, qy[:, None]).mean()), abs=1e-6)


def test_the_two_limits_of_the_attention():
    from metalearn_lite.algorithms.matching import attention_log_probs
    from metalearn_lite.lessons.lesson03 import mean_similarity_probs, nearest_example_probs

    g = torch.Generator().manual_seed(0)
    sim = torch.rand(3, 7, 12, generator=g, dtype=torch.float64) * 2 - 1
    sy = torch.stack([torch.randperm(12, generator=g) % 4 for _ in range(3)])  # 3 shots of each of 4 classes
    tiny = attention_log_probs(sim, sy, 4, torch.tensor(1e-5, dtype=torch.float64)).exp()
    assert torch.allclose(nearest_example_probs(sim, sy, 4), tiny, atol=1e-9)
    huge = attention_log_probs(sim, sy, 4, torch.tensor(1e5, dtype=torch.float64))
    assert torch.equal(mean_similarity_probs(sim, sy, 4).argmax(-1), huge.argmax(-1))
    assert torch.allclose(huge.exp(), torch.full_like(huge, 0.25), atol=1e-4)  # the class frequencies


def test_temperature_sweep_and_its_figures(three_models):
    from metalearn_lite.lessons.lesson03 import plot_attention, plot_temperature_sweep, temperature_sweep

    model = three_models["matching"]
    images = torch.rand(6, 10, 1, 28, 28)
    tau = float(model.temperature.detach())
    sweep = temperature_sweep(model, images, torch.tensor([1e-6, tau, 1e6]), ways=3, shots=3, queries=2, episodes=3)
    assert sweep.accuracy.shape == (3,) and sweep.learned == pytest.approx(tau)
    assert float(sweep.accuracy[0]) == pytest.approx(sweep.nearest)
    assert float(sweep.accuracy[1]) == pytest.approx(sweep.learned_accuracy)
    assert float(sweep.accuracy[2]) == pytest.approx(sweep.mean_similarity)
    import metalearn_lite as ml

    measured = ml.evaluate(model, images, 3, 3, 2, episodes=3, seed=0).mean  # the same tasks, the model's own rule
    assert sweep.learned_accuracy == pytest.approx(measured)
    assert plot_temperature_sweep(sweep).axes[0].get_xscale() == "log"
    episode = EpisodeSampler(images, ways=3, shots=3, queries=2, seed=0).sample(1)
    assert len(plot_attention(model, episode, query=1, temperature=0.5).axes) == 2


def matching_limit_right(sim, sy, ways):
    return F.one_hot(sy.gather(-1, sim.argmax(-1)), ways).to(sim.dtype)


def test_matching_limit_right_and_measured(three_models):
    from metalearn_lite.lessons.lesson03 import check_matching_limit

    assert "nearest-neighbour" in check_passes(check_matching_limit, matching_limit_right)
    printed = check_passes(check_matching_limit, matching_limit_right, three_models["matching"],
                           torch.rand(6, 20, 1, 28, 28), 2)
    assert "learned tau" in printed and "1-shot" in printed


@pytest.mark.parametrize(
    ("fn", "word"),
    [
        (lambda sim, sy, n: sy.gather(-1, sim.argmax(-1)), "predicted labels"),
        (lambda sim, sy, n: (sim.unsqueeze(-2) * F.one_hot(sy, n).transpose(-1, -2).unsqueeze(-3).to(sim.dtype))
         .sum(-1).softmax(-1), "not the limit"),
        (lambda sim, sy, n: sim.softmax(-1) @ F.one_hot(sy, n).to(sim.dtype), "tau = 1"),
        (lambda sim, sy, n: F.one_hot((sim.unsqueeze(-2) * F.one_hot(sy, n).transpose(-1, -2).unsqueeze(-3))
                                      .sum(-1).argmax(-1), n).to(sim.dtype), "MEAN"),
        (lambda sim, sy, n: F.one_hot(sy, n).to(sim.dtype).mean(-2, keepdim=True).expand(*sim.shape[:2], n),
         "frequencies"),
        (lambda sim, sy, n: F.one_hot(sim.argmax(-1) // (sim.shape[-1] // n), n).to(sim.dtype), "sorted by class"),
        (lambda sim, sy, n: matching_limit_right(-sim, sy, n), "LEAST"),
        (lambda sim, sy, n: matching_limit_right(sim, sy, n)[0], "shape"),
    ],
)
def test_matching_limit_wrong(fn, word):
    from metalearn_lite.lessons.lesson03 import check_matching_limit

    _fails(check_matching_limit, fn, word)
