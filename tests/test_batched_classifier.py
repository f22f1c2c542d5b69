"""The metric methods share one base: ``task_logits`` written once gives the meta-batch loss and one-task logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalearn_lite import EpisodeSampler, train
from metalearn_lite.algorithms import BatchedClassifier, MatchingNet, ProtoNet, RelationNet
from metalearn_lite.fewshot import class_means
from metalearn_lite.models import Conv4


class NearestMean(BatchedClassifier):
    """A method of one's own: scaled negative distance to the class means of a linear embedding."""

    name = "nearest_mean_test"

    def __init__(self, dim: int = 16) -> None:
        super().__init__(dim=dim)
        self.embed = nn.Linear(28 * 28, dim)

    def task_logits(self, support_x, support_y, query_x, ways):
        zs, zq = self.embed(support_x.flatten(2)), self.embed(query_x.flatten(2))
        return -torch.cdist(zq, class_means(zs, support_y, ways))


def _images(classes: int = 12, drawings: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    base = torch.rand(classes, 1, 1, 28, 28, generator=g)
    return (base + 0.1 * torch.randn(classes, drawings, 1, 28, 28, generator=g)).clamp(0, 1)


def test_a_method_of_ones_own_needs_only_task_logits(tmp_path) -> None:
    images = _images()
    method = NearestMean()
    episode = EpisodeSampler(images, ways=3, shots=2, queries=2, seed=0).sample(4)
    loss, acc = method.loss(episode)
    want = method.task_logits(episode.support_x, episode.support_y, episode.query_x, 3)
    assert torch.allclose(loss, F.cross_entropy(want.flatten(0, 1), episode.query_y.flatten()))
    assert 0.0 <= float(acc) <= 1.0
    # one task, labelled with arbitrary class ids: the logits of the relabelled task, classes in sorted order
    task = episode.task(1).unbatched()
    ids = torch.tensor([7, 3, 9])
    logits = method.logits(task[0], ids[task[1]], task[2])
    assert torch.allclose(logits, want[1][:, [1, 0, 2]], atol=1e-6)   # ids 3, 7, 9 were labels 1, 0, 2
    assert logits.shape == (task[2].shape[0], 3)
    assert torch.equal(method.predict(task[0], ids[task[1]], task[2]), torch.tensor([3, 7, 9])[logits.argmax(-1)])
    before = [p.detach().clone() for p in method.parameters()]
    train(method, EpisodeSampler(images, ways=3, shots=2, queries=2, seed=1), steps=3, out_dir=tmp_path / "run",
          progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, method.parameters()))


@pytest.mark.parametrize("make", [
    lambda: ProtoNet(Conv4(hidden=8)),
    lambda: MatchingNet(Conv4(hidden=8)),
    lambda: RelationNet(Conv4(hidden=8, pools=2, flatten=False)),
    lambda: RelationNet(Conv4(hidden=8, pools=2, flatten=False), loss="cross_entropy"),
], ids=["protonet", "matching", "relation-mse", "relation-ce"])
def test_the_shipped_metric_methods_share_it(make) -> None:
    torch.manual_seed(0)
    method = make().eval()
    episode = EpisodeSampler(_images(), ways=3, shots=2, queries=2, seed=0).sample(1)   # Conv-4 normalises by batch
    with torch.no_grad():
        batched = method.task_logits(episode.support_x, episode.support_y, episode.query_x, 3)
        one = method.logits(*episode.task(0).unbatched()[:3])
        loss, _ = method.loss(episode)
    assert torch.allclose(one, batched[0], atol=1e-5)
    scores = method.class_scores(one)
    assert ((0 <= scores) & (scores <= 1)).all()
    if isinstance(method, RelationNet):
        assert torch.equal(scores, torch.sigmoid(one))
        if method.objective == "mse":
            target = F.one_hot(episode.query_y, 3).float()
            assert torch.allclose(loss, F.mse_loss(torch.sigmoid(batched), target))
    else:
        assert torch.allclose(scores.sum(-1), torch.ones(len(one)))
