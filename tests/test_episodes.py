"""EpisodeSampler (grouped and flat forms) and the sinusoid task family."""

from __future__ import annotations

import math
import time

import pytest
import torch
from conftest import find_drawing

from metalearn_lite import Episode, EpisodeSampler, SinusoidTasks

T, N, K, Q = 6, 5, 2, 3


@pytest.fixture(scope="module")
def episode(test_split) -> tuple[EpisodeSampler, Episode]:
    sampler = EpisodeSampler(test_split.images, ways=N, shots=K, queries=Q, seed=11)
    return sampler, sampler.sample(T)


def test_meta_batch_shapes(episode):
    _, ep = episode
    assert ep.num_tasks == T
    assert tuple(ep.support_x.shape) == (T, N * K, 1, 28, 28)
    assert tuple(ep.query_x.shape) == (T, N * Q, 1, 28, 28)
    assert tuple(ep.support_y.shape) == (T, N * K)
    assert tuple(ep.query_y.shape) == (T, N * Q)
    assert tuple(ep.classes.shape) == (T, N)
    assert ep.support_x.dtype == torch.float32
    assert ep.support_y.dtype == torch.long


def test_labels_class_major(episode):
    _, ep = episode
    for t in range(T):
        assert torch.equal(ep.support_y[t], torch.arange(N).repeat_interleave(K))
        assert torch.equal(ep.query_y[t], torch.arange(N).repeat_interleave(Q))


def test_n_distinct_classes_per_task(episode, test_split):
    _, ep = episode
    for t in range(T):
        assert len(set(ep.classes[t].tolist())) == N
    assert int(ep.classes.min()) >= 0 and int(ep.classes.max()) < len(test_split)


def test_images_belong_to_their_class(episode, test_split):
    _, ep = episode
    data = test_split.images
    for t in range(T):
        for x, y in ((ep.support_x[t], ep.support_y[t]), (ep.query_x[t], ep.query_y[t])):
            for image, label in zip(x, y.tolist(), strict=True):
                character, _ = find_drawing(data, image)
                assert character == int(ep.classes[t, label])


def test_no_overlap_between_support_and_query(episode, test_split):
    sampler = EpisodeSampler(test_split.images, ways=N, shots=K, queries=Q, seed=11)
    idx, classes = sampler.sample_indices(T)
    assert tuple(idx.shape) == (T, N, K + Q)
    assert torch.equal(classes, episode[1].classes)  # same seed: the same draw as sample()
    for t in range(T):
        support = set(idx[t, :, :K].flatten().tolist())
        query = set(idx[t, :, K:].flatten().tolist())
        assert not support & query
        assert len(support) == N * K and len(query) == N * Q
    # indices point into the flattened (classes*20) data, inside the drawn class
    assert torch.equal(idx // 20, classes.unsqueeze(-1).expand_as(idx))
    # and no drawing appears twice in a task, checked on the images themselves
    _, ep = episode
    for t in range(T):
        images = torch.cat([ep.support_x[t], ep.query_x[t]]).flatten(1)
        assert torch.unique(images, dim=0).shape[0] == N * (K + Q)


def test_same_seed_same_episodes_different_seed_different(test_split):
    a = EpisodeSampler(test_split.images, ways=N, shots=K, queries=Q, seed=5).sample(4)
    b = EpisodeSampler(test_split.images, ways=N, shots=K, queries=Q, seed=5).sample(4)
    c = EpisodeSampler(test_split.images, ways=N, shots=K, queries=Q, seed=6).sample(4)
    assert torch.equal(a.support_x, b.support_x)
    assert torch.equal(a.query_x, b.query_x)
    assert torch.equal(a.classes, b.classes)
    assert not torch.equal(a.support_x, c.support_x)


def test_successive_samples_differ(test_split):
    sampler = EpisodeSampler(test_split.images, ways=N, shots=K, queries=Q, seed=5)
    assert not torch.equal(sampler.sample(2).support_x, sampler.sample(2).support_x)


def test_single_task_helpers(episode):
    _, ep = episode
    one = ep.task(2)
    assert one.num_tasks == 1
    sx, sy, qx, qy = one.unbatched()
    assert torch.equal(sx, ep.support_x[2]) and torch.equal(qy, ep.query_y[2])
    assert torch.equal(one.classes[0], ep.classes[2])
    with pytest.raises(ValueError, match=r"task\(i\)"):
        ep.unbatched()


def test_iteration_gives_single_tasks(test_split):
    it = iter(EpisodeSampler(test_split.images, ways=3, shots=1, queries=2, seed=0))
    ep = next(it)
    assert tuple(ep.support_x.shape) == (1, 3, 1, 28, 28)
    assert tuple(ep.query_x.shape) == (1, 6, 1, 28, 28)


def test_zero_queries():
    ep = EpisodeSampler(torch.rand(6, 4, 3), ways=2, shots=4, queries=0).sample(3)
    assert tuple(ep.support_x.shape) == (3, 8, 3)
    assert tuple(ep.query_x.shape) == (3, 0, 3)


# ---------------------------------------------------------------- the flat (x, y) form


def _flat_dataset():
    """Labels 3, 10, 42, 7 and 99 with 8, 5, 12, 2 and 6 samples; x holds its own index."""
    sizes = {3: 8, 10: 5, 42: 12, 7: 2, 99: 6}
    y = torch.cat([torch.full((n,), label) for label, n in sizes.items()])
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    y = y[perm]  # interleaved, not grouped
    x = torch.arange(len(y), dtype=torch.float32).unsqueeze(1)
    return x, y, sizes


def test_flat_form_with_arbitrary_labels():
    x, y, sizes = _flat_dataset()
    k, q = 2, 3  # label 7 has only 2 < 5 samples and may never be drawn
    sampler = EpisodeSampler(x, y, ways=3, shots=k, queries=q, seed=1)
    assert sampler.num_classes == 4
    ep = sampler.sample(200)
    assert tuple(ep.support_x.shape) == (200, 3 * k, 1)
    assert tuple(ep.query_x.shape) == (200, 3 * q, 1)
    drawn = set(ep.classes.flatten().tolist())
    assert drawn == {3, 10, 42, 99}
    for t in range(200):
        assert len(set(ep.classes[t].tolist())) == 3
        assert torch.equal(ep.support_y[t], torch.arange(3).repeat_interleave(k))
        sx = ep.support_x[t, :, 0].long()
        qx = ep.query_x[t, :, 0].long()
        # each example's true label is the class behind its relabelled label
        assert torch.equal(y[sx], ep.classes[t][ep.support_y[t]])
        assert torch.equal(y[qx], ep.classes[t][ep.query_y[t]])
        everything = torch.cat([sx, qx])
        assert len(set(everything.tolist())) == 3 * (k + q)


def test_flat_sampler_excludes_small_classes():
    x, y, sizes = _flat_dataset()
    sampler = EpisodeSampler(x, y, ways=3, shots=3, queries=3, seed=2)  # needs 6: 7 and 10 excluded
    assert sampler.num_classes == 3
    idx, classes = sampler.sample_indices(300)
    assert set(classes.flatten().tolist()) == {3, 42, 99}
    assert torch.equal(y[idx], classes.unsqueeze(-1).expand_as(idx))
    for t in range(300):
        assert len(set(idx[t].flatten().tolist())) == 3 * 6
    # the class with 12 samples uses more than its first 6
    used_42 = set(idx[classes == 42].flatten().tolist())
    assert used_42 == set((y == 42).nonzero().flatten().tolist())


def _alphabet_ids(split):
    names = split.alphabet_versions
    return torch.tensor([sorted(set(names)).index(a) for a in names])


def test_episodes_within_one_group(test_split):
    groups = _alphabet_ids(test_split)  # katakana (47 characters) and Tagalog (17)
    plain = EpisodeSampler(test_split.images, ways=N, shots=K, queries=Q, seed=3)
    within = EpisodeSampler(test_split.images, ways=N, shots=K, queries=Q, seed=3, groups=groups)
    ep = within.sample(400)
    g = groups[ep.classes]  # (T, N)
    assert bool((g == g[:, :1]).all())  # every episode's classes come from one alphabet
    first = torch.bincount(g[:, 0], minlength=2).float() / 400
    torch.testing.assert_close(first, torch.tensor([47 / 64, 17 / 64]), atol=0.07, rtol=0)  # in proportion
    assert len(set(ep.classes[g[:, 0] == 1].flatten().tolist())) == 17  # every Tagalog character is drawn
    mixed = groups[plain.sample(400).classes]
    assert not bool((mixed == mixed[:, :1]).all(1).all())  # without groups, episodes mix alphabets
    half = EpisodeSampler(test_split.images, ways=N, shots=K, queries=Q, seed=3, groups=groups, same_group=0.5)
    g = groups[half.sample(2000).classes]
    rate_within = float((g == g[:, :1]).all(1).float().mean())
    # half are drawn within an alphabet; of the others, (C(47, 5) + C(17, 5)) / C(64, 5) land in one by chance
    by_chance = (math.comb(47, 5) + math.comb(17, 5)) / math.comb(64, 5)  # 0.20
    assert abs(rate_within - (0.5 + 0.5 * by_chance)) < 0.04
    again = EpisodeSampler(test_split.images, ways=N, shots=K, queries=Q, seed=3, groups=groups).sample(400)
    assert torch.equal(again.classes, ep.classes)  # seeded


def test_groups_too_small_are_never_chosen():
    x = torch.arange(9 * 4, dtype=torch.float32).view(9, 4, 1)  # 9 classes of 4 examples
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    sampler = EpisodeSampler(x, ways=3, shots=1, queries=1, seed=0, groups=groups)
    chosen = groups[sampler.sample(300).classes]
    assert set(chosen[:, 0].tolist()) == {0, 2}  # group 1 has 2 < 3 classes
    with pytest.raises(ValueError, match="no group has 5 classes"):
        EpisodeSampler(x, ways=5, shots=1, queries=1, groups=groups)


@pytest.mark.parametrize("groups, same, match", [
    (torch.zeros(8, dtype=torch.long), 1.0, "one integer group id per class"),
    (torch.zeros(9), 1.0, "one integer group id per class"),
    (torch.zeros(9, dtype=torch.long), 1.5, r"same_group is the fraction"),
    (torch.zeros(9, dtype=torch.long), True, r"same_group is the fraction"),
])
def test_group_errors(groups, same, match):
    x = torch.zeros(9, 4, 1)
    with pytest.raises(ValueError, match=match):
        EpisodeSampler(x, ways=3, shots=1, queries=1, groups=groups, same_group=same)


def test_device_argument_respected(test_split):
    ep = EpisodeSampler(test_split.images, ways=2, shots=1, queries=1, device="cpu").sample(2)
    for t in (ep.support_x, ep.support_y, ep.query_x, ep.query_y):
        assert t.device == torch.device("cpu")
    sampler = EpisodeSampler(test_split.images, ways=2, shots=1, queries=1, device=torch.device("cpu"))
    assert sampler.device == torch.device("cpu")
    assert sampler.sample(1).support_x.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_argument_cuda(test_split):
    ep = EpisodeSampler(test_split.images, ways=5, shots=1, queries=2, device="cuda", seed=4).sample(3)
    assert ep.support_x.device.type == "cuda" and ep.query_y.device.type == "cuda"
    cpu = EpisodeSampler(test_split.images, ways=5, shots=1, queries=2, seed=4).sample(3)
    assert torch.equal(ep.support_x.cpu(), cpu.support_x)  # same seed, same tasks on every device


def test_sampling_is_fast(omniglot):
    sampler = EpisodeSampler(omniglot.images, ways=20, shots=5, queries=5, seed=0)
    sampler.sample(2)  # warm-up
    times = []
    for _ in range(3):  # best of up to 3 tries: a smoke check, not a benchmark, on a possibly busy machine
        start = time.perf_counter()
        ep = sampler.sample(1000)
        times.append(time.perf_counter() - start)
        assert tuple(ep.support_x.shape) == (1000, 100, 1, 28, 28)
        assert tuple(ep.query_x.shape) == (1000, 100, 1, 28, 28)
        del ep
        if times[-1] < 2.0:
            break
    assert min(times) < 2.0, f"1000 20-way 5-shot tasks took {min(times):.2f} s at best"


# ---------------------------------------------------------------- sinusoids


def test_sinusoid_shapes_and_ranges():
    ep = SinusoidTasks(seed=0).sample(tasks=500, shots=10, queries=7)
    assert tuple(ep.support_x.shape) == (500, 10, 1)
    assert tuple(ep.support_y.shape) == (500, 10, 1)
    assert tuple(ep.query_x.shape) == (500, 7, 1)
    assert tuple(ep.query_y.shape) == (500, 7, 1)
    amp, phase = ep.info["amplitude"], ep.info["phase"]
    assert tuple(amp.shape) == tuple(phase.shape) == (500,)
    assert float(amp.min()) >= 0.1 and float(amp.max()) <= 5.0
    assert float(phase.min()) >= 0.0 and float(phase.max()) <= math.pi
    x = torch.cat([ep.support_x, ep.query_x], 1)
    assert float(x.min()) >= -5.0 and float(x.max()) <= 5.0
    # the ranges are actually used, not a corner of them
    assert float(amp.max() - amp.min()) > 4.0
    assert float(phase.max() - phase.min()) > 2.5
    assert float(x.max() - x.min()) > 9.0


def test_sinusoid_targets_follow_the_formula():
    ep = SinusoidTasks(seed=3).sample(tasks=20, shots=5, queries=5)
    a = ep.info["amplitude"].view(-1, 1, 1)
    p = ep.info["phase"].view(-1, 1, 1)
    torch.testing.assert_close(ep.support_y, a * torch.sin(ep.support_x - p))
    torch.testing.assert_close(ep.query_y, a * torch.sin(ep.query_x - p))


def test_sinusoid_seeded():
    a = SinusoidTasks(seed=9).sample(4, 5, 5)
    b = SinusoidTasks(seed=9).sample(4, 5, 5)
    c = SinusoidTasks(seed=10).sample(4, 5, 5)
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_y, b.query_y)
    assert torch.equal(a.info["amplitude"], b.info["amplitude"])
    assert not torch.equal(a.support_x, c.support_x)
    assert not torch.equal(a.info["amplitude"], c.info["amplitude"])


def test_sinusoid_curve_matches():
    ep = SinusoidTasks(seed=1).sample(tasks=3, shots=4, queries=6)
    torch.testing.assert_close(SinusoidTasks.curve(ep.info, ep.support_x), ep.support_y)
    torch.testing.assert_close(SinusoidTasks.curve(ep.info, ep.query_x), ep.query_y)
    grid = torch.linspace(-5, 5, 50).view(50, 1)
    curves = SinusoidTasks.curve(ep.info, grid)
    assert tuple(curves.shape) == (3, 50, 1)
    expected = ep.info["amplitude"].view(3, 1, 1) * torch.sin(grid - ep.info["phase"].view(3, 1, 1))
    torch.testing.assert_close(curves, expected)


def test_sinusoid_custom_ranges():
    ep = SinusoidTasks(amplitude=(2.0, 2.0), phase=(0.0, 0.0), x_range=(0.0, 1.0), seed=0).sample(2, 8, 0)
    assert torch.all(ep.info["amplitude"] == 2.0)
    torch.testing.assert_close(ep.support_y, 2.0 * torch.sin(ep.support_x))
    assert float(ep.support_x.min()) >= 0.0 and float(ep.support_x.max()) <= 1.0
    with pytest.raises(ValueError, match="low <= high"):
        SinusoidTasks(amplitude=(5.0, 0.1))
