"""MANN (LRU access memory) and its LSTM baseline: memory maths, label shifting, episodes, errors."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from metalearn_lite.algorithms import METHODS
from metalearn_lite.algorithms.mann import MANN, LSTMOneShot, MANNState, least_used
from metalearn_lite.checkpoints import load_checkpoint
from metalearn_lite.datasets.omniglot import omniglot_split
from metalearn_lite.datasets.omniglot_sequences import SequenceEpisodes, shuffle_episodes
from metalearn_lite.evaluation import presentation_accuracy, presentation_index
from metalearn_lite.fewshot import FewShotClassifier
from metalearn_lite.recipes import RECIPES, sequence_encoder
from metalearn_lite.recipes.memory import presentation_report
from metalearn_lite.recipes.omniglot import OmniglotSequences
from metalearn_lite.training import train

CPU = torch.device("cpu")


def with_encoder(kw: dict) -> dict:
    """The course's --encoder names (pixels, conv, pretrained) as the module the method takes."""
    if isinstance(kw.get("encoder"), str):
        encoder, freeze = sequence_encoder(kw["encoder"], kw.get("image_size", 28))
        kw = {**kw, "encoder": encoder, "freeze_encoder": freeze}
    return kw


def tiny(cls=MANN, **kw):
    torch.manual_seed(0)
    kw = with_encoder(kw)
    if cls is MANN:
        kw = {"hidden": 16, "memory_size": 8, "memory_width": 6, "read_heads": 2, "image_size": 8, **kw}
    else:
        kw = {"hidden": 16, "image_size": 8, **kw}
    return cls(**kw)


def random_episode(batch=3, ways=3, shots=4, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(ways).repeat_interleave(shots).expand(batch, -1)
    images = torch.rand(batch, ways * shots, 1, size, size, generator=g)
    return shuffle_episodes(images, labels, g)


# ----------------------------------------------------------------------------- memory maths by hand


def test_least_used_marks_the_smallest_usages_in_order():
    usage = torch.tensor([[0.5, 0.1, 0.9, 0.3], [0.0, 0.0, 0.0, 0.0]])
    lu = least_used(usage, 2)
    assert lu.shape == (2, 2, 4)
    assert lu[0].tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]
    assert lu[1].tolist() == [[1, 0, 0, 0], [0, 1, 0, 0]]  # ties: the lower slot first
    with pytest.raises(ValueError, match="least-used"):
        least_used(usage, 5)


@pytest.mark.parametrize("write_first", [True, False])
def test_one_step_writes_to_least_used_slot_and_reads_by_cosine(write_first):
    model = tiny(memory_size=4, memory_width=2, read_heads=1, write_first=write_first)
    key, alpha_logit, beta_logit = [0.5, -0.25], 0.0, 0.0  # tanh(key) is written; sigmoid(0) = 0.5
    with torch.no_grad():
        model.interface.weight.zero_()
        model.interface.bias.copy_(torch.tensor([*key, alpha_logit, beta_logit]))
    k = torch.tanh(torch.tensor(key))
    memory = torch.tensor([[[1.0, 0.0], [2.0, 2.0], [0.0, 1.0], [-1.0, 1.0]]])
    state = MANNState(memory=memory.clone(), reads=torch.zeros(1, 1, 2),
                      read_w=torch.tensor([[[0.0, 0.0, 1.0, 0.0]]]), usage=torch.tensor([[0.5, 0.1, 0.9, 0.3]]),
                      controller=(torch.zeros(1, 16), torch.zeros(1, 16)))
    _, new, w = model.forward_step(torch.zeros(1, model.input_size), state)
    # w^w = 0.5 * previous read (slot 2) + 0.5 * least used (slot 1)
    torch.testing.assert_close(w["write"][0, 0], torch.tensor([0.0, 0.5, 0.5, 0.0]))
    # slot 1 (least used) is zeroed, then slots 1 and 2 each receive half the key
    want = memory.clone()
    want[0, 1] = 0.5 * k
    want[0, 2] = memory[0, 2] + 0.5 * k
    torch.testing.assert_close(new.memory, want)
    # read, from the memory after the write (the paper) or before it: softmax(beta * cos), beta = 1 + log 2
    read_from = want[0] if write_first else memory[0]
    beta = 1 + math.log(2.0)
    cos = torch.stack([torch.dot(k, m) / (k.norm() * m.norm() + 1e-8) for m in read_from])
    rw = torch.softmax(beta * cos, 0)
    torch.testing.assert_close(w["read"][0, 0], rw)
    torch.testing.assert_close(new.reads[0, 0], rw @ read_from)
    if write_first:  # slot 1 holds exactly half the key: the read's best match is the key just written
        assert int(rw.argmax()) == 1
    # usage: gamma * old + read + write
    torch.testing.assert_close(new.usage[0], 0.95 * torch.tensor([0.5, 0.1, 0.9, 0.3]) + rw
                               + torch.tensor([0.0, 0.5, 0.5, 0.0]))


def test_heads_write_to_different_least_used_slots():
    model = tiny(memory_size=8, read_heads=3)
    _, info = model(*random_episode(batch=1))
    first = info["write"][0, 0]  # step 0: nothing read yet, so each head writes (1 - alpha) to its slot
    assert (first.argmax(-1).sort().values == torch.tensor([0, 1, 2])).all()


def test_presentation_index_and_accuracy_by_hand():
    labels = torch.tensor([[2, 0, 2, 2, 0, 1]])
    assert presentation_index(labels).tolist() == [[1, 1, 2, 3, 2, 1]]
    correct = torch.tensor([[False, True, True, False, True, True]])
    acc = presentation_accuracy(correct, labels, 3)
    assert acc.shape == (1, 3)
    assert acc[0, 0].item() == pytest.approx(2 / 3)  # steps 0, 1, 5
    assert acc[0, 1].item() == 1.0 and acc[0, 2].item() == 0.0
    assert torch.isnan(presentation_accuracy(correct, labels, 4)[0, 3])
    with pytest.raises(ValueError, match="sequences, steps"):
        presentation_accuracy(correct[0], labels[0], 3)


# ----------------------------------------------------------------------------- the models


@pytest.mark.parametrize("cls", [MANN, LSTMOneShot])
def test_shapes_and_causal_label_input(cls):
    model = tiny(cls, classes=3)
    x, y = random_episode()
    logits, info = model(x, y)
    assert logits.shape == (3, 12, 3)
    if cls is MANN:
        assert info["read"].shape == (3, 12, 2, 8) and info["write"].shape == (3, 12, 2, 8)
        assert info["usage"].shape == (3, 12, 8)
    # the label of step t enters at step t + 1: changing it leaves steps <= t unchanged
    y2 = y.clone()
    y2[:, 5] = (y2[:, 5] + 1) % 3
    logits2, _ = model(x, y2)
    torch.testing.assert_close(logits2[:, :6], logits[:, :6])
    assert not torch.allclose(logits2[:, 6], logits[:, 6])


@pytest.mark.parametrize("cls", [MANN, LSTMOneShot])
def test_deterministic(cls):
    x, y = random_episode()
    a, _ = tiny(cls, classes=3)(x, y)
    b, _ = tiny(cls, classes=3)(x, y)
    assert torch.equal(a, b)


def test_gradients_reach_the_controller_through_the_memory():
    model = tiny(classes=3)
    x, y = random_episode()
    logits, info = model(x, y)
    info["memory"].sum().backward(retain_graph=True)
    assert model.lstm.weight_ih.grad.abs().sum() > 0 and model.interface.weight.grad.abs().sum() > 0
    model.zero_grad()
    # the keys reach the loss only through the memory (they are written, then read back)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
    key_rows = model.interface.weight.grad.view(2, 6 + 2, 16)[:, :6]
    assert key_rows.abs().sum() > 0


@pytest.mark.parametrize("keys_see_input", [False, True])
def test_sequence_forward_equals_step_by_step_with_the_same_gradients(keys_see_input):
    model = tiny(classes=3, keys_see_input=keys_see_input)
    x, y = random_episode()
    inputs = model.inputs(x, y)
    logits, _ = model.run_inputs(inputs)
    logits.square().sum().backward()
    fast = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    state, steps = model.initial_state(3), []
    for t in range(inputs.shape[1]):
        out, state, _ = model.forward_step(inputs[:, t], state)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps, 1), logits)
    torch.stack(steps, 1).square().sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, fast[n], msg=n)


def test_keys_see_input():
    plain, seeing = tiny(classes=3), tiny(classes=3, keys_see_input=True)
    assert seeing.config["keys_see_input"] is True and plain.interface_input is None
    seeing.load_state_dict({**plain.state_dict(), "interface_input.weight": seeing.interface_input.weight}, strict=True)
    x, y = random_episode()
    with torch.no_grad():
        assert not torch.allclose(seeing(x, y)[0], plain(x, y)[0])  # the input changes the keys and gates ...
        seeing.interface_input.weight.zero_()
        torch.testing.assert_close(seeing(x, y)[0], plain(x, y)[0])  # ... through interface_input alone
        # the input's share of every head's key, gate and strength: (R * (M + 2), input_size)
        assert seeing.interface_input.weight.shape == (2 * (6 + 2), 64 + 3)
    seeing.interface_input.weight.data.normal_(0, 0.1)
    seeing.loss((x, y))[0].backward()
    assert seeing.interface_input.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="keys_see_input must be True or False"):
        tiny(keys_see_input=1)


@pytest.mark.parametrize("cls", [MANN, LSTMOneShot])
def test_few_shot_classifier(cls):
    model = tiny(cls).eval()
    assert isinstance(model, FewShotClassifier)
    g = torch.Generator().manual_seed(1)
    sx, qx = torch.rand(6, 1, 8, 8, generator=g), torch.rand(4, 1, 8, 8, generator=g)
    sy = torch.tensor([7, 3, 7, 3, 9, 9])
    with torch.no_grad():
        logits = model.logits(sx, sy, qx)
        pred = model.predict(sx, sy, qx)
        # each query is answered alone from the state after the support set
        one = model.logits(sx, sy, qx[2:3])
    assert logits.shape == (4, 3)
    assert set(pred.tolist()) <= {3, 7, 9}
    torch.testing.assert_close(one[0], logits[2], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="at most 5 classes"):
        model.logits(torch.rand(6, 1, 8, 8), torch.arange(6), qx)


@pytest.mark.parametrize("cls", [MANN, LSTMOneShot])
def test_wrong_inputs_fail_clearly(cls):
    model = tiny(cls, classes=3)
    x, y = random_episode()
    with pytest.raises(ValueError, match=r"built for 8x8"):
        model(torch.rand(3, 12, 1, 28, 28), y)
    with pytest.raises(ValueError, match="at most 3 classes"):
        model(x, y + 1)
    with pytest.raises(ValueError, match="labels must be"):
        model(x, y[:, :5])
    with pytest.raises(ValueError, match="built for 8x8"):
        model.logits(torch.rand(3, 1, 28, 28), torch.arange(3), torch.rand(2, 1, 28, 28))


def test_bad_configurations_fail_clearly():
    with pytest.raises(ValueError, match="memory_size=2 is too small for 4 heads"):
        MANN(memory_size=2, read_heads=4)
    with pytest.raises(ValueError, match="gamma"):
        MANN(gamma=1.5)
    with pytest.raises(ValueError, match="classes"):
        LSTMOneShot(classes=0)


# ----------------------------------------------------------------------------- episodes and training


def test_sequence_episodes(omniglot):
    images = omniglot.images[:12]
    a = SequenceEpisodes(images, ways=5, shots=10, seed=3)
    x, y = a.sample(4)
    assert x.shape == (4, 50, 1, 28, 28) and y.shape == (4, 50)
    for i in range(4):
        assert torch.bincount(y[i], minlength=5).tolist() == [10] * 5  # 5 classes x 10 drawings
        assert not torch.equal(y[i], y[i].sort().values)  # in a random order
        for c in range(5):  # one character per label, 10 distinct drawings
            drawings = x[i, y[i] == c].flatten(1)
            char = [int((images.flatten(2) == d).all(-1).nonzero()[0, 0]) for d in drawings]
            assert len(set(char)) == 1 and len(torch.unique(drawings, dim=0)) == 10
    b = SequenceEpisodes(images, ways=5, shots=10, seed=3)
    x2, y2 = b.sample(4)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_mann_trains_through_the_trainer(tmp_path):
    assert METHODS["mann"] is MANN and METHODS["lstm_oneshot"] is LSTMOneShot
    torch.manual_seed(0)
    model = MANN(hidden=8, memory_size=8, memory_width=4, read_heads=1, image_size=10)
    recipe = RECIPES["mann"]
    settings = recipe.settings(image_size=10, rotations=False)
    run = recipe.run_config(steps=2, tasks_per_step=2, val_every=2, val_episodes=4)
    source = recipe.tasks(model, settings, CPU, run)
    result = train(model, source, source, run, out_dir=tmp_path / "run", progress=False)
    h = result.history[-1]
    assert 0 <= h["val_acc"] <= 1 and {"val_acc1", "val_acc2", "val_acc10"} <= h.keys()
    loaded = load_checkpoint(tmp_path / "run" / "best.pt", method="mann")
    report = presentation_report(loaded, episodes=3, seed=0)
    assert "presentation  1" in report and "presentation 10" in report
    with pytest.raises(ValueError, match="image_size=10"):
        recipe.tasks(model, recipe.settings(image_size=28), CPU, run)


# ----------------------------------------------------------------------------- the convolutional encoder


@pytest.mark.parametrize("cls", [MANN, LSTMOneShot])
@pytest.mark.parametrize("encoder", ["pixels", "conv"])
def test_query_logits_are_the_next_step_of_the_support_sequence(cls, encoder):
    model = tiny(cls, image_size=16, encoder=encoder).eval()
    g = torch.Generator().manual_seed(2)
    sx, qx = torch.rand(6, 1, 16, 16, generator=g), torch.rand(3, 1, 16, 16, generator=g)
    sy = torch.tensor([0, 1, 2, 0, 1, 2])
    order = torch.randperm(6, generator=torch.Generator().manual_seed(0))  # the order logits() shows them in
    with torch.no_grad():
        logits = model.logits(sx, sy, qx)
        for q in range(3):
            seq = torch.cat([sx[order], qx[q : q + 1]]).unsqueeze(0)
            labels = torch.cat([sy[order], torch.zeros(1, dtype=torch.long)]).unsqueeze(0)
            full, _ = model(seq, labels)
            torch.testing.assert_close(logits[q], full[0, -1, :3], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [MANN, LSTMOneShot])
def test_conv_encoder_shapes_gradients_and_errors(cls):
    model = tiny(cls, classes=3, image_size=16, encoder="conv")
    assert model.input_size == 32 + 3  # a 32-filter Conv-4 leaves 1 x 1 x 32 features of a 16 px drawing
    x, y = random_episode(size=16)
    logits, _ = model(x, y)
    assert logits.shape == (3, 12, 3)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
    assert model.encoder.features[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="too small for 4 poolings"):
        tiny(cls, image_size=8, encoder="conv")
    with pytest.raises(ValueError, match="unknown encoder 'cnn'"):
        tiny(cls, encoder="cnn")
    with pytest.raises(ValueError, match="encoder must be a torch.nn.Module"):
        cls(encoder=3)
    with pytest.raises(ValueError, match="freeze_encoder=True needs an encoder"):
        cls(freeze_encoder=True)
    with pytest.raises(ValueError, match="built for 16x16"):
        model(torch.rand(3, 12, 1, 28, 28), y)


def test_pretrained_encoder_is_frozen_and_precomputed_features_give_the_same_outputs(omniglot):
    torch.manual_seed(0)
    model = MANN(**with_encoder(dict(hidden=16, memory_size=8, memory_width=6, read_heads=2, encoder="pretrained")))
    assert model.input_size == 64 + 5
    assert not any(p.requires_grad for p in model.encoder.parameters())
    model.train()
    assert model.training and not model.encoder.training  # running statistics, always
    images = omniglot.images[:6, :10]  # (6 characters, 10 drawings, 1, 28, 28)
    feats = model.encode_drawings(images)
    assert feats.shape == (6, 10, 64)
    x, y = SequenceEpisodes(images, ways=5, shots=2, seed=1).sample(3)
    xf, yf = SequenceEpisodes(feats, ways=5, shots=2, seed=1).sample(3)
    assert torch.equal(y, yf)
    with torch.no_grad():
        torch.testing.assert_close(model(xf, yf)[0], model(x, y)[0], rtol=1e-5, atol=1e-5)
    loss, _ = model.loss((xf, yf))
    loss.backward()
    assert model.lstm.weight_ih.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", [MANN, LSTMOneShot])
def test_normalized_features_keep_only_the_direction(cls):
    model = tiny(cls, classes=3, normalize_features=True)
    assert model.config["normalize_features"] is True
    x, y = random_episode()
    inputs = model.inputs(x, y)
    torch.testing.assert_close(inputs[..., :64].norm(dim=-1), torch.full((3, 12), 8.0))  # sqrt(64)
    torch.testing.assert_close(inputs[..., 64:], tiny(cls, classes=3).inputs(x, y)[..., 64:])  # labels untouched
    with torch.no_grad():  # a drawing scaled by any positive factor looks the same to the controller
        torch.testing.assert_close(model(3.0 * x, y)[0], model(x, y)[0])
        plain = tiny(cls, classes=3)
        assert not torch.allclose(plain(3.0 * x, y)[0], plain(x, y)[0])
    with pytest.raises(ValueError, match="normalize_features must be True or False"):
        tiny(cls, normalize_features="no")


def test_normalized_precomputed_features_give_the_same_outputs(omniglot):
    torch.manual_seed(0)
    model = MANN(**with_encoder(dict(hidden=16, memory_size=8, memory_width=6, read_heads=2, encoder="pretrained",
                                     normalize_features=True))).eval()
    images = omniglot.images[:6, :4]
    x, y = SequenceEpisodes(images, ways=5, shots=2, seed=1).sample(2)
    xf, _ = SequenceEpisodes(model.encode_drawings(images), ways=5, shots=2, seed=1).sample(2)
    with torch.no_grad():
        torch.testing.assert_close(model(xf, y)[0], model(x, y)[0], rtol=1e-5, atol=1e-5)
        sx, sy = images[:5, 0], torch.arange(5)
        assert model.logits(sx, sy, images[:5, 1]).shape == (5, 5)


def test_pretrained_encoder_errors():
    with pytest.raises(ValueError, match="image_size 28"):
        sequence_encoder("pretrained", 20)
    with pytest.raises(ValueError, match="only a frozen encoder"):
        tiny(MANN, image_size=16, encoder="conv").encode_drawings(torch.rand(2, 3, 1, 16, 16))


def test_pretrained_encoder_with_augment_shows_one_encoded_version_of_each_drawing(monkeypatch):
    monkeypatch.setattr(OmniglotSequences, "ENCODED_COPIES", 3)
    model = MANN(**with_encoder(dict(hidden=8, memory_size=8, memory_width=4, read_heads=1, encoder="pretrained")))
    recipe = RECIPES["mann"]
    cfg = recipe.settings(augment=True)
    source = recipe.tasks(model, cfg, CPU, recipe.run_config(val_episodes=2))
    bank = source.episodes.sampler.data  # (C * D, 3 * 64): each drawing, then two distortions of it
    assert source.copies == 3 and bank.shape[-1] == 3 * 64
    versions = bank.unflatten(-1, (3, 64))  # (C * D, 3, 64)
    drawings = omniglot_split("train", rotations=True, seed=cfg.seed).images[:2, :3]  # 2 characters x 3
    per_class = bank.shape[0] // omniglot_split("train", rotations=True, seed=cfg.seed).images.shape[0]
    ours = versions.unflatten(0, (-1, per_class))[:2, :3, 0]
    torch.testing.assert_close(ours, model.encode_drawings(drawings))
    assert (versions[:, 1:] - versions[:, :1]).abs().amax() > 1e-3  # the distortions change the features
    x, y = source.sample(4)
    assert x.shape == (4, 50, 64) and y.shape == (4, 50)
    for row in x[0, :5]:  # every step shows exactly one of the encoded versions of a drawing
        assert ((versions - row).abs().amax(-1) < 1e-6).any()
    plain = recipe.tasks(model, recipe.settings(), CPU, recipe.run_config(val_episodes=2))
    assert plain.copies == 1 and plain.episodes.sampler.data.shape[-1] == 64


# ----------------------------------------------------------------------------- compiled training step


@pytest.mark.skipif(not any(shutil.which(c) for c in ("c++", "g++", "clang++")),
                    reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_training_step_matches_eager():
    eager, compiled = tiny(classes=3, keys_see_input=True), tiny(classes=3, keys_see_input=True)
    compiled.compile_training()
    x, y = random_episode()
    for model in (eager, compiled):
        model.train()
        model.loss((x, y))[0].backward()
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
    # evaluation runs the eager step: a compiled step that fails is never called there
    compiled._compiled_step = lambda *a: (_ for _ in ()).throw(AssertionError("compiled step used in eval"))
    with torch.no_grad():
        torch.testing.assert_close(compiled.eval()(x, y)[0], eager.eval()(x, y)[0])


def test_compile_needs_a_cpp_compiler_on_cpu(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="needs a C\\+\\+ compiler"):
        tiny().compile_training()
