"""batching="threads": a meta-batch's tasks on worker threads give the loop's results (up to float rounding),
the same results every time, gradients on the original weights only, and clear errors where it cannot run."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from metalearn_lite.algorithms import MAML, ProtoMAML, Reptile, task_threads
from metalearn_lite.models import Conv4
from tests.test_maml import assert_matches_finite_differences, image_tasks, meta_grad, tiny_maml


@pytest.fixture
def two_threads():
    """Two intra-op threads, so that ``threads`` runs two workers (the suite may run with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def relative(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum(((x - y) ** 2).sum() for x, y in zip(a, b)) / sum((y ** 2).sum() for y in b)))


def conv_method(cls, batching: str, **kw):
    torch.manual_seed(0)
    net = Conv4(1, 4, "batch", out_features=3, image_size=16)
    return cls(net, ways=3, batching=batching, **kw)


@pytest.mark.parametrize("cls, kw", [
    (MAML, dict(zero_head=False)),                        # second order, a meta-learned head
    (MAML, dict(first_order=True, inner_steps=2)),        # first order, zero head
    (MAML, dict(meta_sgd=True, anil=True)),               # learned rates, head-only inner loop
    (ProtoMAML, {}),                                      # the head built from the support set (worker_net)
    (Reptile, dict(inner_steps=2)),
], ids=["maml", "fomaml", "metasgd-anil", "proto-maml", "reptile"])
def test_threads_give_the_loops_meta_gradient_and_test_time_weights(two_threads, cls, kw):
    episode = image_tasks(tasks=5, ways=3, queries=2, dtype=torch.float32)
    loop, threads = conv_method(cls, "loop", **kw), conv_method(cls, "threads", **kw)
    g_loop, g_threads = meta_grad(loop, episode), meta_grad(threads, episode)
    assert relative(g_threads, g_loop) < 1e-5
    assert relative(meta_grad(threads, episode), g_threads) == 0  # deterministic: the same bits again
    a = loop.adapted_params(episode.support_x, episode.support_y)
    b = threads.adapted_params(episode.support_x, episode.support_y)
    assert relative(list(b.values()), list(a.values())) < 1e-5
    qa, qb = loop.query_losses(episode), threads.query_losses(episode)
    assert torch.allclose(qa, qb, rtol=1e-5, atol=1e-6)


def test_threads_second_order_meta_gradient_matches_finite_differences(two_threads):
    method = tiny_maml(inner_steps=2, batching="threads")
    assert_matches_finite_differences(method, image_tasks())  # two tasks: one per worker
    # in float64 the workers' sum is the loop's to the last bits (measured 2e-16 with three tasks)
    three = image_tasks(tasks=3)
    loop = meta_grad(tiny_maml(inner_steps=2, batching="loop"), three)
    assert relative(meta_grad(tiny_maml(inner_steps=2, batching="threads"), three), loop) < 1e-12


def test_threads_run_on_workers_and_leave_the_network_alone(two_threads, monkeypatch):
    method = conv_method(MAML, "threads", zero_head=False)
    params = dict(method.net.named_parameters())
    seen: set[str] = set()
    original = task_threads.worker_net

    def spy(net):
        copy = original(net)
        if task_threads.in_worker():
            assert copy is not method.net  # a worker never runs functional_call on the shared module
        seen.add(threading.current_thread().name)
        return copy

    monkeypatch.setattr(task_threads, "worker_net", spy)
    monkeypatch.setattr("metalearn_lite.algorithms.inner_loop.worker_net", spy)
    loss, _ = method.loss(image_tasks(tasks=4, ways=3, dtype=torch.float32))
    loss.backward()
    assert len({name for name in seen if name.startswith("metalearn-task")}) == 2
    assert dict(method.net.named_parameters()) == params  # the same Parameter objects, with gradients
    assert all(p.grad is not None for n, p in params.items())


def test_one_thread_runs_the_loop_here():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        names = task_threads.run_tasks(3, lambda i: (i, threading.current_thread().name))
    finally:
        torch.set_num_threads(before)
    assert names == [(i, threading.current_thread().name) for i in range(3)]


def test_threads_keep_the_callers_autograd_mode(two_threads):
    with torch.no_grad():
        modes = task_threads.run_tasks(4, lambda i: torch.is_grad_enabled())
    assert modes == [False] * 4
    assert task_threads.run_tasks(4, lambda i: torch.is_grad_enabled()) == [True] * 4


def test_a_failing_task_raises_after_every_worker_finished(two_threads):
    method = conv_method(MAML, "threads", zero_head=False, inner_lr=1e30)
    with pytest.raises(FloatingPointError, match="inner loop diverged"):
        method.loss(image_tasks(tasks=4, ways=3, dtype=torch.float32))


def test_threads_refuse_dropout_and_other_devices():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match="dropout"):
        MAML(net, ways=3, batching="threads").loss(image_tasks(tasks=2, ways=3, dtype=torch.float32))
    with pytest.raises(ValueError, match="on meta use batching='vmap' or 'loop'"):
        task_threads.check_threads(nn.Linear(2, 2), torch.device("meta"))
    with pytest.raises(ValueError, match="'threads'"):
        MAML(ways=3, batching="thread")


def test_a_forked_child_gets_workers_of_its_own(two_threads):
    """A process forked after the workers started (a DataLoader worker, say) has none of the parent's threads: it
    starts a pool of its own instead of queueing work for the copied pool, whose threads do not exist there."""
    import multiprocessing
    import os

    assert task_threads.run_tasks(2, lambda i: i) == [0, 1]  # the parent's pool exists now
    inherited = task_threads._pool(2)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        own_pool, results = pool.apply_async(_child_run, (os.getpid(),)).get(timeout=60)
    assert own_pool and results == [0, 1]
    assert task_threads._pool(2) is inherited  # the parent keeps its own


def _child_run(parent: int) -> tuple[bool, list[int]]:
    torch.set_num_threads(2)
    results = task_threads.run_tasks(2, lambda i: i)
    return task_threads._pool(2) is not task_threads._pools[(parent, 2)], results
