"""Transfer baselines: pretraining through the one trainer, and the three adaptation modes."""

from __future__ import annotations

import pytest
import torch

from metalearn_lite import evaluate
from metalearn_lite.algorithms import METHODS
from metalearn_lite.algorithms.transfer import (
    BaselinePlusPlus,
    CosineHead,
    FineTune,
    LinearProbe,
    Pretrained,
    adapter,
    conv_blocks,
)
from metalearn_lite.checkpoints import load_checkpoint
from metalearn_lite.cli import main
from metalearn_lite.models import Conv4
from metalearn_lite.recipes import RECIPES
from metalearn_lite.recipes.omniglot import ClassBatch, ClassBatches
from metalearn_lite.recipes.settings import TaskSettings
from metalearn_lite.training import TrainConfig, train


def tiny(**kwargs) -> Pretrained:
    torch.manual_seed(0)
    return Pretrained(Conv4(hidden=8, norm="running"), classes=kwargs.pop("classes", 10), **kwargs).eval()


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def task():
    g = torch.Generator().manual_seed(0)
    sx = torch.rand(6, 1, 28, 28, generator=g)  # 3-way 2-shot, labels are arbitrary integers
    sy = torch.tensor([7, 7, 2, 2, 9, 9])
    qx = torch.rand(5, 1, 28, 28, generator=g)
    return sx, sy, qx


def test_registered_with_cli_flags():
    assert METHODS["pretrained"] is Pretrained
    assert {"hidden", "norm", "head"} <= set(RECIPES["pretrained"].model_flags)


def test_pretraining_loss_and_nearest_mean_classifier(task):
    model = tiny()
    batch = ClassBatch(torch.rand(4, 1, 28, 28), torch.tensor([0, 3, 9, 3]))
    loss, acc = model.loss(batch)
    assert loss.shape == () and torch.isfinite(loss) and 0 <= acc <= 1
    loss.backward()
    assert model.backbone.features[0].weight.grad is not None
    sx, sy, qx = task
    assert model.logits(sx, sy, qx).shape == (5, 3)
    assert set(model.predict(sx, sy, qx).tolist()) <= {2, 7, 9}
    # a query identical to the support images of one class is classified as that class
    assert model.predict(sx, sy, sx[2:4]).tolist() == [2, 2]


def test_cosine_head_is_scaled_cosine():
    head = CosineHead(4, 3, scale=5.0)
    z = torch.randn(2, 4)
    want = 5.0 * torch.nn.functional.cosine_similarity(z[:, None], head.weight[None], dim=-1)
    torch.testing.assert_close(head(z), want)
    model = Pretrained(Conv4(hidden=8, norm="running"), classes=10, head="cosine")
    assert model(torch.rand(2, 1, 28, 28)).abs().max() <= 10.0 + 1e-4


def test_class_batches_are_flat_with_global_labels():
    cfg = TaskSettings(ways=6, shots=3, rotations=False, augment=True)
    source = ClassBatches(cfg, torch.device("cpu"), classes=156, val_episodes=2)
    batch = source.sample()
    assert batch.images.shape == (18, 1, 28, 28) and batch.labels.shape == (18,)
    assert batch.labels.unique().numel() == 6 and 0 <= batch.labels.min() and batch.labels.max() < 156
    assert set(source.generators()) == {"sampler", "augment"}
    with pytest.raises(ValueError, match="classes=156"):
        ClassBatches(cfg, torch.device("cpu"), classes=624)


def test_trains_through_the_one_trainer(tmp_path):
    model = Pretrained(Conv4(hidden=8, norm="running"), classes=156)
    source = ClassBatches(TaskSettings(ways=8, shots=2, rotations=False), torch.device("cpu"), 156, val_episodes=3)
    before = snapshot(model)
    result = train(model, source, source, steps=4, val_every=2, save_every=2, out_dir=tmp_path / "run", progress=False)
    assert result.step == 4 and [h["step"] for h in result.history] == [2, 4]
    assert all(0 <= h["val_acc"] <= 1 for h in result.history)
    assert not same(before, snapshot(model))
    loaded = load_checkpoint(tmp_path / "run" / "last.pt", method="pretrained")
    assert same(snapshot(loaded), snapshot(model))


def test_image_size_mismatch_is_explained():
    recipe = RECIPES["pretrained"]
    with pytest.raises(ValueError, match="image_size"):
        recipe.tasks(tiny(), TaskSettings(image_size=32), torch.device("cpu"), TrainConfig())


def test_class_count_beyond_the_head_is_explained():
    with pytest.raises(ValueError, match="classes >= 11"):
        tiny().loss(ClassBatch(torch.rand(2, 1, 28, 28), torch.tensor([0, 10])))


# ------------------------------------------------------------------------- linear probe: frozen


@pytest.mark.parametrize("head", ["logistic", "centroid"])
def test_linear_probe_keeps_backbone_frozen(task, head):
    model = tiny()
    before = snapshot(model)
    probe = LinearProbe(model, head=head)
    sx, sy, qx = task
    logits = probe.logits(sx, sy, qx)
    assert logits.shape == (5, 3) and torch.isfinite(logits).all()
    assert not logits.requires_grad
    assert set(probe.predict(sx, sy, qx).tolist()) <= {2, 7, 9}
    assert same(before, snapshot(model))
    assert all(p.requires_grad for p in model.parameters())  # the flags of the model are left alone


def test_linear_probe_learns_an_easy_task():
    # two classes that differ in brightness: pixels separate them, so a probe on pixels must get it right
    g = torch.Generator().manual_seed(1)
    dark, bright = torch.rand(8, 1, 28, 28, generator=g) * 0.3, 0.7 + torch.rand(8, 1, 28, 28, generator=g) * 0.3
    sx, sy = torch.cat([dark[:3], bright[:3]]), torch.tensor([0, 0, 0, 1, 1, 1])
    qx, qy = torch.cat([dark[3:], bright[3:]]), torch.tensor([0] * 5 + [1] * 5)
    assert torch.equal(LinearProbe(None, normalize=False).predict(sx, sy, qx), qy)


# ------------------------------------------------------------------------- fine-tuning: changes weights


def test_fine_tune_changes_a_copy_and_never_the_pretrained_model(task):
    model = tiny()
    before = snapshot(model)
    ft = FineTune(model, steps=5, lr=1e-2)
    sx, sy, qx = task
    adapted = ft.adapt(sx, sy)
    assert len(adapted.losses) == 5 and adapted.losses[-1] < adapted.losses[0]
    assert adapted.backbone is not model.backbone
    for new, old in zip(conv_blocks(adapted.backbone), conv_blocks(model.backbone)):
        assert not torch.equal(new[0].weight, old[0].weight)  # every block moved
    assert same(before, snapshot(model))
    assert ft.logits(sx, sy, qx).shape == (5, 3)
    assert same(before, snapshot(model))


def test_adapt_returns_a_classifier_that_scores_and_predicts_like_the_adapter(task):
    """``adapt`` means what it means for MAML: the support set in, a model that scores and predicts out."""
    model = tiny()
    sx, sy, qx = task
    ft = FineTune(model, steps=3, lr=1e-2)
    adapted = ft.adapt(sx, sy)
    assert torch.equal(adapted.classes, torch.tensor([2, 7, 9]))
    with torch.no_grad():
        scores = adapted(qx)
    assert scores.shape == (5, 3) and torch.equal(scores, ft.logits(sx, sy, qx))
    assert torch.equal(adapted.predict(qx), ft.predict(sx, sy, qx))
    assert set(adapted.predict(qx).tolist()) <= {2, 7, 9}


@pytest.mark.parametrize("frozen", [1, 2, 3])
def test_fine_tune_frozen_layers_stay_frozen(task, frozen):
    model = tiny()
    sx, sy, _ = task
    adapted = FineTune(model, steps=4, lr=1e-2, frozen_layers=frozen).adapt(sx, sy)
    for i, (new, old) in enumerate(zip(conv_blocks(adapted.backbone), conv_blocks(model.backbone))):
        unchanged = all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), old.state_dict().values()))
        assert unchanged == (i < frozen), f"block {i} with frozen_layers={frozen}"


def test_head_only_fine_tune_and_zero_steps(task):
    model = tiny()
    before = snapshot(model)
    sx, sy, qx = task
    adapted = FineTune(model, steps=3, lr=1e-2, frozen_layers=4).adapt(sx, sy)
    assert same(before, snapshot(model)) and adapted.head.weight.abs().sum() > 0
    # no step: the zero-initialised head gives every class the same score
    logits = FineTune(model, steps=0).logits(sx, sy, qx)
    assert torch.equal(logits, torch.zeros(5, 3))


def test_prototype_head_init_starts_at_the_nearest_class_mean(task):
    model = tiny()
    sx, sy, qx = task
    start = FineTune(model, steps=0, head_init="prototypes")
    assert torch.equal(start.predict(sx, sy, qx), model.predict(sx, sy, qx))
    with pytest.raises(ValueError, match="head_init"):
        FineTune(model, head_init="random")


def test_baseline_plus_plus_trains_a_cosine_head_on_a_frozen_backbone(task):
    model = tiny()
    before = snapshot(model)
    sx, sy, qx = task
    bpp = BaselinePlusPlus(model, steps=10, lr=1e-2, scale=5.0)
    start = BaselinePlusPlus(model, steps=0, scale=5.0).adapt(sx, sy).head.weight.detach().clone()
    adapted = bpp.adapt(sx, sy)
    assert isinstance(adapted.head, CosineHead) and not torch.equal(adapted.head.weight, start)
    assert adapted.losses[-1] < adapted.losses[0]
    logits = bpp.logits(sx, sy, qx)
    assert logits.shape == (5, 3) and logits.abs().max() <= 5.0 + 1e-4
    assert same(before, snapshot(model))
    moved = BaselinePlusPlus(model, steps=3, lr=1e-2, freeze_backbone=False).adapt(sx, sy)
    assert not torch.equal(moved.backbone.features[0].weight, model.backbone.features[0].weight)
    assert same(before, snapshot(model))


def test_adapters_work_through_evaluate(omniglot):
    data = omniglot.images[:12]
    model = tiny()
    before = snapshot(model)
    for mode, options in [("probe", {}), ("finetune", {"steps": 2}), ("baseline++", {"steps": 2})]:
        result = evaluate(adapter(model, mode, **options), data, ways=3, shots=1, queries=2, episodes=2)
        assert len(result.accuracies) == 2
    assert same(before, snapshot(model))


@pytest.mark.parametrize("mode", [True, False])
def test_evaluate_leaves_the_pretrained_models_mode_alone(omniglot, mode):
    model = tiny().train(mode)
    for wrapper in (LinearProbe(model), FineTune(model, steps=1), BaselinePlusPlus(model, steps=1)):
        assert not wrapper.training
        evaluate(wrapper, omniglot.images[:6], ways=3, shots=1, queries=1, episodes=1)
        assert model.training is mode and model.backbone.training is mode and not wrapper.training


# ------------------------------------------------------------------------- errors


def test_runaway_fine_tune_stops_with_a_clear_error(task):
    sx, sy, _ = task
    with pytest.raises(FloatingPointError, match=r"step \d+ of 20 with lr=1e\+06.*smaller learning rate"):
        FineTune(tiny(), steps=20, lr=1e6).adapt(sx, sy)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda m: FineTune(m, frozen_layers=5), "frozen_layers must be 0..4"),
        (lambda m: FineTune(m, steps=-1), "steps must be an int >= 0"),
        (lambda m: FineTune(m, lr=0.0), "lr must be > 0"),
        (lambda m: FineTune(m, head="mlp"), "unknown head"),
        (lambda m: FineTune(None), "needs a backbone"),
        (lambda m: LinearProbe(m, head="svm"), "unknown probe head"),
        (lambda m: LinearProbe(m, C=0), "C .* must be > 0"),
        (lambda m: LinearProbe(torch.nn.Linear(3, 3)), "expected a Pretrained model"),
        (lambda m: adapter(m, "distill"), "unknown adaptation mode"),
        (lambda m: adapter(m, "probe", steps=3), "bad option for probe"),
        (lambda m: Pretrained(classes=1), "classes must be an int >= 2"),
        (lambda m: Pretrained(torch.nn.Linear(3, 3)), "needs a Conv4 backbone"),
        (lambda m: Pretrained(head="mlp"), "unknown head"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(tiny())


def test_cli_sizes_the_head_for_the_training_classes(tmp_path):
    code = main(["train", "pretrained", "--out", str(tmp_path / "r"), "--hidden", "8", "--steps", "1",
                 "--val-episodes", "2", "--set", "rotations=false", "--no-progress"])
    assert code == 0
    assert load_checkpoint(tmp_path / "r" / "best.pt").config["classes"] == 156
