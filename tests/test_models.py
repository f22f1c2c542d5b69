"""Conv4 (three normalisations), BatchStatNorm2d and the MLP."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metalearn_lite import MLP, Conv4
from metalearn_lite.models import BatchStatNorm2d


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _images(batch: int, size: int = 28) -> torch.Tensor:
    return torch.rand(batch, 1, size, size)


def test_conv4_embedding_is_64_dim():
    model = Conv4()
    out = model(_images(3))
    assert tuple(out.shape) == (3, 64)
    assert model.embedding_dim(28) == 64
    assert model.head is None


def test_conv4_with_head():
    model = Conv4(out_features=5)
    out = model(_images(4))
    assert tuple(out.shape) == (4, 5)
    assert tuple(model.embed(_images(4)).shape) == (4, 64)


def test_conv4_other_sizes():
    assert Conv4(hidden=32).embedding_dim(28) == 32
    assert tuple(Conv4(hidden=32)(_images(2)).shape) == (2, 32)
    assert Conv4().embedding_dim(84) == 64 * 5 * 5
    assert tuple(Conv4(in_channels=3, out_features=7, image_size=84)(torch.rand(2, 3, 84, 84)).shape) == (2, 7)


def test_batch_norm_uses_batch_statistics_in_eval_mode():
    model = Conv4(norm="batch").eval()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, BatchStatNorm2d) for m in model.modules()) == 4
    assert len(list(model.buffers())) == 0  # no running statistics
    x = _images(8)
    with torch.no_grad():
        alone = model(x[:4])
        together = model(x)
    # the first four samples get different outputs when other samples join the batch
    assert not torch.allclose(alone, together[:4], atol=1e-4)
    # and eval mode is the same computation as train mode
    model.train()
    with torch.no_grad():
        torch.testing.assert_close(model(x), together)


def test_running_norm_is_per_sample_in_eval_mode():
    model = Conv4(norm="running")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 4
    with torch.no_grad():
        model.train()
        for _ in range(3):
            model(_images(16))  # move the running statistics away from their start
        model.eval()
        x = _images(8)
        together = model(x)
        for i in range(8):
            torch.testing.assert_close(model(x[i : i + 1]), together[i : i + 1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(x.flip(0)), together.flip(0), atol=1e-5, rtol=1e-5)
    assert len(list(model.buffers())) > 0


def test_running_norm_depends_on_batch_in_train_mode():
    model = Conv4(norm="running").train()
    x = _images(8)
    with torch.no_grad():
        assert not torch.allclose(model(x[:4]), model(x)[:4], atol=1e-4)


def test_no_norm():
    model = Conv4(norm="none").eval()
    assert not any(isinstance(m, (nn.BatchNorm2d, BatchStatNorm2d)) for m in model.modules())
    x = _images(6)
    with torch.no_grad():
        torch.testing.assert_close(model(x[:2]), model(x)[:2], atol=1e-5, rtol=1e-5)


def test_batch_stat_norm_matches_functional_batch_norm():
    x = torch.randn(6, 5, 7, 3, dtype=torch.float64) * 3 + 2
    norm = BatchStatNorm2d(5).double()
    with torch.no_grad():
        norm.weight.copy_(torch.randn(5, dtype=torch.float64))
        norm.bias.copy_(torch.randn(5, dtype=torch.float64))
    expected = torch.nn.functional.batch_norm(
        x, None, None, weight=norm.weight, bias=norm.bias, training=True, eps=norm.eps
    )
    torch.testing.assert_close(norm(x), expected, atol=1e-10, rtol=0)
    assert [n for n, _ in norm.named_parameters()] == ["weight", "bias"]
    assert len(list(norm.buffers())) == 0


def test_batch_stat_norm_gradients_match():
    x1 = torch.randn(4, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    norm = BatchStatNorm2d(3).double()
    w = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    (norm(x1) * w).sum().backward()
    ref = torch.nn.functional.batch_norm(x2, None, None, norm.weight, norm.bias, training=True, eps=norm.eps)
    (ref * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-10, rtol=0)


def test_mlp_default():
    model = MLP()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1, 40), (40, 40), (40, 1)]
    assert sum(p.numel() for p in model.parameters()) == 1761
    assert tuple(model(torch.rand(10, 1)).shape) == (10, 1)


def test_mlp_custom_and_bad_input():
    model = MLP(in_features=3, hidden=(8,), out_features=2)
    assert tuple(model(torch.rand(4, 3)).shape) == (4, 2)
    assert sum(p.numel() for p in model.parameters()) == 3 * 8 + 8 + 8 * 2 + 2
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        model(torch.rand(4, 2))


def test_models_train():
    """A few SGD steps reduce the loss: gradients flow through every layer."""
    model = Conv4(out_features=3)
    x, y = _images(12), torch.arange(3).repeat(4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        losses.append(float(loss.detach()))
        opt.step()
    assert losses[-1] < losses[0]
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("norm", ["batch", "running", "none"])
def test_models_run_on_cuda(norm):
    x = _images(4)
    model = Conv4(norm=norm, out_features=5)
    with torch.no_grad():
        cpu_out = model.eval()(x)
        model = model.to("cuda")
        out = model(x.to("cuda"))
    assert out.device.type == "cuda" and tuple(out.shape) == (4, 5)
    torch.testing.assert_close(out.cpu(), cpu_out, atol=1e-4, rtol=1e-4)
    mlp = MLP().to("cuda")
    assert mlp(torch.rand(7, 1, device="cuda")).device.type == "cuda"
