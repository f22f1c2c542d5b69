"""The episodic trainer: checkpoints it writes, deterministic resume, reproducibility, errors."""

from __future__ import annotations

import pytest
import torch

from metalearn_lite import omniglot_split
from metalearn_lite.algorithms import LSTMOneShot, ProtoNet, SiameseNet
from metalearn_lite.checkpoints import load_checkpoint, read_checkpoint
from metalearn_lite.models import Conv4
from metalearn_lite.recipes.omniglot import OmniglotEpisodes
from metalearn_lite.recipes.settings import TaskSettings
from metalearn_lite.training import TrainConfig, TrainResult
from metalearn_lite.training import train as train_on

# save_every=5 (not a divisor of 3): a last.pt at step 3 can only come from the interrupt handler
TINY = dict(steps=6, val_every=3, save_every=5, val_episodes=5)
TASKS = dict(ways=5, shots=1, queries=2, rotations=False)
COMMAND = "python -m metalearn_lite train protonet --steps 6"
CPU = torch.device("cpu")


def tiny_model(cls=ProtoNet, **kwargs):
    torch.manual_seed(0)  # the same initial weights every time
    return cls(Conv4(hidden=8), **kwargs)


def episodes(cfg: TrainConfig, **task) -> OmniglotEpisodes:
    """The course's Omniglot episodes (what `train protonet` draws), seeded like the run."""
    return OmniglotEpisodes(TaskSettings(**{**TASKS, **task, "seed": cfg.seed}), CPU, cfg.val_episodes)


def train(model, cfg: TrainConfig, out, source=None, **kwargs) -> TrainResult:
    source = source or episodes(cfg)
    return train_on(model, source, source, cfg, out_dir=out, task_config={"ways": 5}, **kwargs)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], atol=1e-6, rtol=0, msg=lambda m, k=k: f"{k}: {m}")


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """6 uninterrupted steps (shared by the tests that compare against it)."""
    out = tmp_path_factory.mktemp("run_a")
    model = tiny_model()
    result = train(model, TrainConfig(**TINY), out, command=COMMAND, progress=False)
    return model, result, out


def test_train_writes_best_and_last(run_a):
    model, result, out = run_a
    assert isinstance(result, TrainResult)
    assert result.step == 6 and not result.interrupted and result.out_dir == out
    assert result.best_path == out / "best.pt"
    assert [h["step"] for h in result.history] == [3, 6]
    for h in result.history:
        assert 0.0 <= h["val_acc"] <= 1.0 and 0.0 <= h["acc"] <= 1.0 and h["loss"] > 0
    assert result.best_val == max(h["val_acc"] for h in result.history)
    for name in ("best.pt", "last.pt"):
        blob = read_checkpoint(out / name)
        assert blob["method"] == "protonet" and blob["config"] == model.config
        assert blob["command"] == COMMAND and blob["seed"] == 0
        assert blob["train_config"]["steps"] == 6 and blob["task_config"]["ways"] == 5
        assert isinstance(blob["history"], list) and blob["history"]
    last = read_checkpoint(out / "last.pt")
    assert last["step"] == 6 and last["history"] == result.history
    assert {"optimizer", "scheduler", "rng"} <= last.keys()
    assert "optimizer" not in read_checkpoint(out / "best.pt")
    # last.pt holds the final weights, best.pt a loadable model of the best validation
    assert_same_weights(load_checkpoint(out / "last.pt"), model)
    assert isinstance(load_checkpoint(out / "best.pt", method="protonet"), ProtoNet)


def test_training_changes_weights(run_a):
    model, _, _ = run_a
    changed = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(), tiny_model().state_dict().values())]
    assert any(changed)


def test_same_seed_gives_identical_weights(run_a, tmp_path):
    model_a, result_a, _ = run_a
    model = tiny_model()
    result = train(model, TrainConfig(**TINY), tmp_path / "again", progress=False)
    assert_same_weights(model, model_a)
    assert [h["val_acc"] for h in result.history] == [h["val_acc"] for h in result_a.history]


def test_other_seed_gives_other_weights(run_a, tmp_path):
    model_a, _, _ = run_a
    model = tiny_model()
    train(model, TrainConfig(**{**TINY, "seed": 1}), tmp_path / "seed1", progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), model_a.state_dict().values()))


def _interrupt_then_resume(out, monkeypatch, interrupt_in: str):
    """Run B: Ctrl-C during step 4, then a second train() call on the same folder."""
    model = tiny_model()
    if interrupt_in == "loss":
        calls = {"n": 0}
        real_loss = model.loss

        def loss(episode):
            calls["n"] += 1
            if calls["n"] == 5:  # call 1 is the check of the first tasks before step 1
                raise KeyboardInterrupt
            return real_loss(episode)

        monkeypatch.setattr(model, "loss", loss)
    source = episodes(TrainConfig(**TINY))
    if interrupt_in == "sampler":  # the training sampler, before it draws step 4's episode
        calls = {"n": 0}
        real_sample = source.sampler.sample

        def sample(tasks=1):
            calls["n"] += 1
            if calls["n"] == 5:  # call 1 is the check of the first tasks before step 1
                raise KeyboardInterrupt
            return real_sample(tasks)

        monkeypatch.setattr(source.sampler, "sample", sample)
    result = train(model, TrainConfig(**TINY), out, source, command=COMMAND, progress=False)
    monkeypatch.undo()
    assert result.interrupted and result.step == 3
    last = read_checkpoint(out / "last.pt")
    assert last["step"] == 3 and [h["step"] for h in last["history"]] == [3]
    assert (out / "best.pt").is_file()

    resumed = tiny_model()  # fresh initial weights: everything must come from last.pt
    result = train(resumed, TrainConfig(**TINY), out, command=COMMAND, progress=False)
    assert result.step == 6 and not result.interrupted
    assert [h["step"] for h in result.history] == [3, 6]
    assert read_checkpoint(out / "last.pt")["step"] == 6
    return resumed


def test_resume_after_interrupt_in_sampler_matches_straight_run(run_a, tmp_path, monkeypatch):
    model_a, _, _ = run_a
    resumed = _interrupt_then_resume(tmp_path / "b", monkeypatch, "sampler")
    assert_same_weights(resumed, model_a)


def test_resume_after_interrupt_in_loss_matches_straight_run(run_a, tmp_path, monkeypatch, capsys):
    # Ctrl-C most often lands in the forward/backward pass, after step 4's episode was drawn
    model_a, _, _ = run_a
    resumed = _interrupt_then_resume(tmp_path / "b", monkeypatch, "loss")
    assert "interrupted at step 3" in capsys.readouterr().out
    assert_same_weights(resumed, model_a)


def test_finished_run_resumes_as_a_no_op(run_a, tmp_path):
    model_a, _, out = run_a
    model = tiny_model()
    result = train(model, TrainConfig(**TINY), out, progress=False)
    assert result.step == 6 and len(result.history) == 2
    assert_same_weights(model, model_a)


def test_resume_with_other_method_config_raises(run_a):
    _, _, out = run_a
    with pytest.raises(ValueError, match="different run"):
        train(ProtoNet(Conv4(hidden=16)), TrainConfig(**TINY), out, progress=False)
    with pytest.raises(ValueError, match="different run"):
        train(ProtoNet(Conv4(hidden=8), distance="cosine"), TrainConfig(**TINY), out, progress=False)
    with pytest.raises(ValueError, match="different run"):
        train(SiameseNet(Conv4(hidden=8)), TrainConfig(**TINY), out, progress=False)


def test_resume_false_starts_over(run_a, tmp_path):
    model_a, _, _ = run_a
    out = tmp_path / "other"
    train(tiny_model(distance="cosine"), TrainConfig(**{**TINY, "steps": 1}), out, progress=False)
    model = tiny_model()
    result = train(model, TrainConfig(**TINY), out, progress=False, resume=False)
    assert result.step == 6
    assert_same_weights(model, model_a)


def test_non_finite_loss_names_step_and_suggests_lower_lr(tmp_path, monkeypatch):
    model = tiny_model()
    calls = {"n": 0}
    real_loss = model.loss

    def loss(episode):
        calls["n"] += 1
        value, acc = real_loss(episode)
        return (value * float("nan") if calls["n"] == 3 else value), acc  # call 1: the check before step 1

    monkeypatch.setattr(model, "loss", loss)
    with pytest.raises(FloatingPointError) as err:
        train(model, TrainConfig(**TINY), tmp_path / "nan", progress=False)
    message = str(err.value)
    assert "step 2" in message
    assert "nan" in message
    assert "lower the learning rate" in message


def test_huge_learning_rate_fails_clearly(tmp_path):
    with pytest.raises(FloatingPointError, match="learning rate"):
        train(tiny_model(), TrainConfig(**{**TINY, "lr": 1e30, "steps": 4}), tmp_path / "lr", progress=False)


@pytest.mark.parametrize(
    "kwargs", [{"steps": 0}, {"val_every": 0}, {"save_every": 0}, {"lr": 0.0}, {"steps": 2.5}, {"tasks_per_step": 0}],
)
def test_train_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"ways": 0}, {"shots": -1}, {"same_alphabet": 1.5}, {"same_alphabet": -0.1}, {"same_alphabet": "all"},
               {"by": "stroke"}, {"val_classes": 1.0}],
)
def test_task_settings_reject_bad_values(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        TaskSettings(**kwargs)


def test_train_refuses_task_settings_and_unknown_names(tmp_path):
    source = episodes(TrainConfig(**TINY))
    with pytest.raises(ValueError, match=r"unknown training setting\(s\) \['ways'\].*belongs to the task source"):
        train_on(tiny_model(), source, ways=5, out_dir=tmp_path)
    with pytest.raises(ValueError, match="tasks must have sample"):
        train_on(tiny_model(), [1, 2, 3], out_dir=tmp_path)
    with pytest.raises(ValueError, match="needs a metalearn_lite method"):
        train_on(Conv4(), source, out_dir=tmp_path)
    with pytest.raises(ValueError, match="val_tasks must be"):
        train_on(tiny_model(), source, val_tasks=42, out_dir=tmp_path)


def test_same_alphabet_episodes_in_training(tmp_path):
    cfg = TrainConfig(**TINY)
    source = episodes(cfg, same_alphabet=1.0, rotations=True)
    train_split = omniglot_split("train", rotations=True)
    alphabet = train_split.alphabet_versions
    for classes in source.sample(50).classes.tolist():  # every episode: one alphabet, in one rotation
        assert len({alphabet[c] for c in classes}) == 1
    mixed = episodes(cfg, rotations=True)
    assert any(len({alphabet[c] for c in classes}) > 1 for classes in mixed.sample(50).classes.tolist())
    result = train(tiny_model(), cfg, tmp_path / "within", source)
    assert result.step == TINY["steps"]
    with pytest.raises(ValueError, match="needs the split by alphabet"):
        episodes(cfg, same_alphabet=0.5, by="character")


def test_same_alphabet_refused_without_alphabets():
    from metalearn_lite.recipes.memory import CopySource
    from metalearn_lite.recipes.sinusoid import SinusoidSource

    settings = TaskSettings(same_alphabet=1.0)
    with pytest.raises(ValueError, match="copy-task sequences, which have no alphabets"):
        CopySource(settings, CPU, bits=8)
    with pytest.raises(ValueError, match="sinusoid regression tasks, which have no alphabets"):
        SinusoidSource(settings, CPU)


def test_compile_refused_for_methods_without_a_compiled_step(tmp_path):
    with pytest.raises(ValueError, match="lstm_oneshot has no compiled training step") as err:
        train(LSTMOneShot(), TrainConfig(**{**TINY, "compile": True}), tmp_path / "c", progress=False)
    # read from the registry
    assert "is for: mann, matching, pretrained, protonet, relation, siamese, triplet)" in str(err.value)
    assert not (tmp_path / "c" / "last.pt").exists()


def test_same_alphabet_in_sequence_and_pretraining_sources():
    from metalearn_lite.algorithms.mann import MANN
    from metalearn_lite.recipes.omniglot import ClassBatches, OmniglotSequences

    alphabet = omniglot_split("train", rotations=True).alphabet_versions
    settings = TaskSettings(same_alphabet=1.0, rotations=True, ways=5, shots=2)
    model = MANN(hidden=8, memory_size=8, memory_width=4, read_heads=1)
    sequences = OmniglotSequences(settings, CPU, val_episodes=5)
    assert model.classes == 5
    _, classes = sequences.episodes.sampler.sample_indices(20)
    for row in classes.tolist():  # every MANN episode: one alphabet, in one rotation
        assert len({alphabet[c] for c in row}) == 1
    batches = ClassBatches(settings, CPU, classes=len(alphabet))
    for _ in range(5):  # every pretraining batch: classes of one alphabet
        assert len({alphabet[c] for c in batches.sample().labels.tolist()}) == 1
