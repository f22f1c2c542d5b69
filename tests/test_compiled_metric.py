"""The compiled channels_last training path of the metric methods computes the eager path's gradients."""

from __future__ import annotations

import shutil

import pytest
import torch

from metalearn_lite.algorithms import LSTMOneShot, ProtoNet
from metalearn_lite.episodes import Episode
from metalearn_lite.models import Conv4

HAS_CXX = any(shutil.which(c) for c in ("c++", "g++", "clang++"))


def tiny_protonet() -> ProtoNet:
    torch.manual_seed(0)  # the same initial weights for both copies
    return ProtoNet(Conv4(hidden=8))


def episode(tasks: int = 2, ways: int = 5, shots: int = 2, queries: int = 3) -> Episode:
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(ways)
    return Episode(support_x=torch.rand(tasks, ways * shots, 1, 28, 28, generator=g),
                   support_y=labels.repeat_interleave(shots).repeat(tasks, 1),
                   query_x=torch.rand(tasks, ways * queries, 1, 28, 28, generator=g),
                   query_y=labels.repeat_interleave(queries).repeat(tasks, 1))


def assert_same_gradients(eager: torch.nn.Module, fast: torch.nn.Module) -> None:
    """``fast``'s gradients (after one backward) are ``eager``'s up to float32 rounding; so are its buffers."""
    # float32 with other summation orders (channels_last convolution kernels, fused reductions) over ~1e4
    # terms per gradient entry: measured, the whole gradient agrees to 4e-6 of its norm and each entry to
    # 5e-6 of the largest entry; the bounds are 1e-5 and 2e-5.  Scales are the whole gradient's, not each
    # entry's: a convolution's bias before a batch norm has an exactly zero gradient, whose float32 value is
    # rounding noise.  A real difference in the maths (a wrong layout, a missing term) is of order 1e-1.
    g_eager = torch.cat([p.grad.flatten() for p in eager.parameters()])
    g_fast = torch.cat([p.grad.flatten() for p in fast.parameters()])
    assert (g_fast - g_eager).norm() <= 1e-5 * g_eager.norm()
    scale = g_eager.abs().max()
    for (name, p), q in zip(eager.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=2e-5 * scale, msg=name)
    for (name, b), c in zip(eager.named_buffers(), fast.buffers()):  # batch-norm running statistics
        # a running mean's entries near zero carry the batch mean's rounding (measured for channels_last
        # nn.BatchNorm2d: 4.6e-7 against a largest entry of 0.085): bounded by the buffer's scale too
        atol = 2e-5 * float(b.abs().max()) if b.is_floating_point() else 0
        torch.testing.assert_close(c, b, rtol=1e-5, atol=max(atol, 1e-7), msg=name)


def first_conv(module: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.skipif(not HAS_CXX, reason="torch.compile on a CPU needs a C++ compiler (c++, g++ or clang++)")
def test_compiled_channels_last_step_has_the_eager_gradients():
    eager, fast = tiny_protonet(), tiny_protonet()
    fast.compile_training()
    assert first_conv(fast.encoder).weight.is_contiguous(memory_format=torch.channels_last)
    batch = episode()
    for model in (eager, fast):
        model.train()
        loss, _ = model.loss(batch)
        loss.backward()
    assert_same_gradients(eager, fast)
    # evaluation runs the eager task_logits: a compiled one that fails is never called there
    fast._compiled_logits = lambda *a: (_ for _ in ()).throw(AssertionError("compiled logits used in eval"))
    with torch.no_grad():
        torch.testing.assert_close(fast.eval().loss(batch)[0], eager.eval().loss(batch)[0], rtol=1e-5, atol=1e-6)


def test_compile_needs_a_cpp_compiler_on_cpu(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    method = tiny_protonet()
    with pytest.raises(ValueError, match="needs a C\\+\\+ compiler"):
        method.compile_training()
    assert method._compiled_logits is None  # nothing half-done: the method trains eagerly as before


def test_methods_without_a_compiled_step_have_no_compile_training():
    assert not hasattr(LSTMOneShot(), "compile_training")
