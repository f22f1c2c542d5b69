"""Episodes through torch's DataLoader: the batch sampler's episodes equal EpisodeSampler's (with workers too),
exact resume, labels read cheaply from any map-style Dataset, and train/evaluate on a loader or a Dataset."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, TensorDataset

import metalearn_lite as ml
from metalearn_lite.dataset_labels import read_labels


def _data(classes: int = 8, per: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.rand(classes * per, 1, 4, 4), torch.arange(classes).repeat_interleave(per)


class Items(Dataset):
    """A data set that holds no labels anywhere a sampler could read them; counts item reads."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.reads = x, y, 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        self.reads += 1
        return self.x[i], int(self.y[i])


def _same(a: ml.Episode, b: ml.Episode) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("support_x", "support_y", "query_x", "query_y",
                                                                     "classes"))


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_yields_the_episode_samplers_episodes(workers):
    x, y = _data()
    sampler = ml.EpisodeBatchSampler(TensorDataset(x, y), ways=3, shots=2, queries=1, tasks=2, batches=3, seed=4)
    loader = DataLoader(TensorDataset(x, y), batch_sampler=sampler, collate_fn=sampler.collate, num_workers=workers)
    reference = ml.EpisodeSampler(x, y, ways=3, shots=2, queries=1, seed=4)
    episodes = list(loader)
    assert len(episodes) == len(loader) == 3
    for ep in episodes:
        assert ep.support_x.shape == (2, 6, 1, 4, 4) and ep.query_y.tolist() == [[0, 1, 2]] * 2
        assert _same(ep, reference.sample(2))


def test_loader_tasks_resume_exactly_with_workers_ahead():
    x, y = _data()
    make = lambda: ml.episode_loader(TensorDataset(x, y), ways=2, shots=1, queries=1, batches=4, seed=1,  # noqa: E731
                                     num_workers=2)
    straight = ml.LoaderTasks(make())
    want = [straight.sample(1) for _ in range(7)]  # crosses a pass boundary (4 batches a pass)
    first = ml.LoaderTasks(make())
    got = [first.sample(1) for _ in range(3)]
    state = {k: g.get_state() for k, g in first.generators().items()}  # workers have drawn further ahead
    assert not torch.equal(state["episode_batch_sampler"], first.sampler.generator.get_state())
    again = ml.LoaderTasks(make())
    for k, g in again.generators().items():
        g.set_state(state[k])
    got += [again.sample(1) for _ in range(4)]
    assert all(_same(a, b) for a, b in zip(got, want))


def test_train_on_a_loader_resumes_like_an_uninterrupted_run(tmp_path):
    x, y = _data()

    def run(steps: int, out: str) -> dict:
        torch.manual_seed(0)
        method = ml.ProtoNet(nn.Sequential(nn.Flatten(), nn.Linear(16, 8)))
        loader = ml.episode_loader(TensorDataset(x, y), ways=3, shots=1, queries=2, tasks=2, batches=3, seed=2)
        ml.train(method, loader, steps=steps, tasks_per_step=2, out_dir=tmp_path / out, progress=False,
                 save_every=1, val_every=100)
        return method.state_dict()

    straight = run(5, "straight")
    run(2, "split")
    resumed = run(5, "split")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_labels_are_read_without_items_where_the_dataset_holds_them():
    x, y = _data()
    assert torch.equal(torch.as_tensor(read_labels(TensorDataset(x, y))[0]), y)
    subset = Subset(TensorDataset(x, y), [3, 7, 20])
    assert read_labels(subset)[0].tolist() == [0, 1, 4]
    both = ConcatDataset([TensorDataset(x, y), TensorDataset(x, y + 8)])
    assert read_labels(both)[0].tolist() == y.tolist() + (y + 8).tolist()


def test_labels_read_once_from_items_otherwise():
    x, y = _data()
    data = Items(x, y)
    first = ml.EpisodeSampler.from_dataset(data, ways=2, shots=1, queries=1, seed=0)
    assert data.reads == len(data)  # every item once, for its label
    again = ml.EpisodeBatchSampler(data, ways=2, shots=1, queries=1, seed=0)
    assert data.reads == len(data)  # not again
    assert torch.equal(first.labels, y) and again.drawer.num_classes == 8
    assert read_labels(Subset(data, [0, 5]))[0].tolist() == [0, 1]


def test_evaluate_accepts_a_dataset_and_a_loader():
    x, y = _data()
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8))
    method = ml.ProtoNet(net)
    on_tensors = ml.evaluate(method, (x, y), ways=3, shots=1, queries=2, episodes=6, seed=3)
    on_subset = ml.evaluate(method, Subset(TensorDataset(x, y), range(40)), ways=3, shots=1, queries=2, episodes=6,
                            seed=3)
    assert torch.equal(on_tensors.accuracies, on_subset.accuracies)
    loader = ml.episode_loader(TensorDataset(x, y), ways=3, shots=1, queries=2, seed=3, num_workers=2)
    on_loader = ml.evaluate(method, loader, episodes=6)
    assert torch.equal(on_tensors.accuracies, on_loader.accuracies)
    assert (on_loader.ways, on_loader.shots, on_loader.queries) == (3, 1, 2)
    meta_batches = ml.episode_loader(TensorDataset(x, y), ways=4, shots=1, queries=1, tasks=4, seed=3)
    assert len(ml.evaluate(method, meta_batches, episodes=6).accuracies) == 6  # tasks of a batch, one by one


def test_wrong_collate_and_wrong_meta_batch_are_explained():
    x, y = _data()
    sampler = ml.EpisodeBatchSampler(TensorDataset(x, y), ways=2, shots=1, queries=1, tasks=2)
    plain = ml.LoaderTasks(DataLoader(TensorDataset(x, y), batch_sampler=sampler))
    with pytest.raises(ValueError, match="collate_fn=sampler.collate"):
        plain.sample(2)
    tasks = ml.LoaderTasks(DataLoader(TensorDataset(x, y), batch_sampler=sampler, collate_fn=sampler.collate))
    with pytest.raises(ValueError, match="not a multiple of the loader's 2 tasks per batch"):
        tasks.sample(3)
    assert tasks.sample(4).num_tasks == 4
    with pytest.raises(ValueError, match="batch_sampler is an ml.EpisodeBatchSampler"):
        ml.LoaderTasks(DataLoader(TensorDataset(x, y), batch_size=4))
