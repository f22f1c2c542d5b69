"""Every user mistake gives a ValueError whose message says how to fix it."""

from __future__ import annotations

import re

import pytest
import torch

from metalearn_lite import Conv4, EpisodeSampler, load_omniglot, omniglot_split
from metalearn_lite.fewshot import check_task


def _grouped(classes: int = 4, per_class: int = 6) -> torch.Tensor:
    return torch.rand(classes, per_class, 1, 28, 28)


def test_ways_larger_than_classes():
    with pytest.raises(ValueError, match=r"ways=5 is larger than the 4 classes.*use ways <= 4"):
        EpisodeSampler(_grouped(4, 6), ways=5, shots=1, queries=1)


def test_ways_larger_than_classes_flat_form():
    x = torch.rand(12, 3)
    y = torch.tensor([0, 0, 0, 0, 5, 5, 5, 5, 9, 9, 9, 9])
    with pytest.raises(ValueError, match=r"use ways <= 3"):
        EpisodeSampler(x, y, ways=4, shots=1, queries=1)


def test_shots_plus_queries_larger_than_per_class():
    with pytest.raises(ValueError, match=r"lower shots or queries so that shots \+ queries <= 6"):
        EpisodeSampler(_grouped(4, 6), ways=2, shots=3, queries=4)


def test_too_few_classes_with_enough_samples():
    x = torch.rand(10, 2)
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])  # only class 0 has 3 + 3 samples
    with pytest.raises(ValueError, match=r"lower shots or queries"):
        EpisodeSampler(x, y, ways=2, shots=3, queries=3)


def test_float_labels():
    x = torch.rand(8, 2)
    y = torch.tensor([0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    with pytest.raises(ValueError, match=r"integer class labels.*float32"):
        EpisodeSampler(x, y, ways=2, shots=1, queries=1)


def test_bool_labels():
    x = torch.rand(8, 2)
    y = torch.tensor([True, False] * 4)
    with pytest.raises(ValueError, match=r"integer class labels"):
        EpisodeSampler(x, y, ways=2, shots=1, queries=1)


def test_labels_of_wrong_length():
    with pytest.raises(ValueError, match=r"one label per example"):
        EpisodeSampler(torch.rand(8, 2), torch.zeros(7, dtype=torch.long), ways=1, shots=1, queries=1)


@pytest.mark.parametrize("arg", [{"ways": 0}, {"shots": 0}, {"queries": -1}, {"ways": 2.0}])
def test_non_positive_task_shape(arg):
    kwargs = {"ways": 2, "shots": 1, "queries": 1, **arg}
    name = next(iter(arg))
    with pytest.raises(ValueError, match=rf"{name} must be an int >= "):
        EpisodeSampler(_grouped(), **kwargs)


def test_unknown_split():
    with pytest.raises(ValueError, match=r"unknown split 'training'; choose one of \['train', 'val', 'test'\]"):
        omniglot_split("training")


def test_unknown_alphabet(omniglot):
    with pytest.raises(ValueError, match=r"unknown alphabet\(s\) \['Klingon'\]; choose from \[.*'Tagalog'"):
        omniglot.select(["Greek", "Klingon"])


def test_unknown_split_kind():
    with pytest.raises(ValueError, match=r"unknown split kind by='drawer'; choose 'alphabet' or 'character'"):
        omniglot_split("train", by="drawer")


def test_missing_data_files(tmp_path):
    with pytest.raises(ValueError, match=r"not found.*data/omniglot") as info:
        load_omniglot(root=tmp_path)
    assert "images_background_small1.zip" in str(info.value)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(ValueError, match=r"data/omniglot"):
        omniglot_split("test", root=tmp_path)


def test_missing_data_files_via_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_LITE_DATA", str(tmp_path))
    with pytest.raises(ValueError, match=r"data/omniglot.*METALEARN_LITE_DATA"):
        load_omniglot()


def test_conv4_needs_batch_dimension():
    with pytest.raises(ValueError, match=r"\(batch, 1, height, width\).*x\.unsqueeze\(0\)"):
        Conv4()(torch.rand(1, 28, 28))


def test_conv4_wrong_channel_count():
    with pytest.raises(ValueError, match=r"must have shape \(batch, 1, height, width\); got \(2, 3, 28, 28\)"):
        Conv4()(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"\(batch, 3, height, width\)"):
        Conv4(in_channels=3)(torch.rand(2, 1, 28, 28))


def test_conv4_integer_images():
    x = (torch.rand(2, 1, 28, 28) * 255).to(torch.uint8)
    with pytest.raises(ValueError, match=r"floating point.*uint8.*x\.float\(\).*divide by 255"):
        Conv4()(x)


def test_conv4_images_too_small():
    with pytest.raises(ValueError, match=r"at least 16x16"):
        Conv4()(torch.rand(2, 1, 8, 8))


def test_conv4_unknown_norm():
    with pytest.raises(ValueError, match=r"unknown norm 'layer'; choose one of \['batch', 'running', 'none'\]"):
        Conv4(norm="layer")


def test_check_task_empty_support():
    with pytest.raises(ValueError, match=r"support set is empty: give at least one labelled example per class"):
        check_task(torch.empty(0, 1, 28, 28), torch.empty(0, dtype=torch.long), torch.rand(3, 1, 28, 28))


def test_check_task_batched_episode():
    sx, sy, qx = torch.rand(2, 5, 1, 28, 28), torch.zeros(2, 5, dtype=torch.long), torch.rand(2, 5, 1, 28, 28)
    with pytest.raises(ValueError, match=r"episode\.task\(i\)\.unbatched\(\)"):
        check_task(sx, sy, qx)


def test_check_task_float_labels():
    with pytest.raises(ValueError, match=r"integer labels"):
        check_task(torch.rand(2, 4), torch.tensor([0.0, 1.0]), torch.rand(3, 4))


def test_check_task_mismatched_query_shape():
    with pytest.raises(ValueError, match=r"both must be \(count, \*example_shape\)"):
        check_task(torch.rand(2, 4), torch.tensor([0, 1]), torch.rand(3, 5))


def test_check_task_integer_images():
    with pytest.raises(ValueError, match=r"\.float\(\)"):
        check_task(torch.ones(2, 4, dtype=torch.uint8), torch.tensor([0, 1]), torch.ones(3, 4, dtype=torch.uint8))


def test_shots_plus_queries_advice_is_enough_with_unequal_classes():
    """Following the message's advice must give a sampler that works."""
    x = torch.rand(33, 2)
    y = torch.tensor([3] * 8 + [10] * 5 + [42] * 12 + [7] * 2 + [99] * 6)
    with pytest.raises(ValueError, match=r"shots \+ queries <= (\d+)") as info:
        EpisodeSampler(x, y, ways=4, shots=3, queries=3)  # needs 4 classes with 6 samples: only 3 have them
    advised = int(re.search(r"shots \+ queries <= (\d+)", str(info.value)).group(1))
    # with shots + queries at the advised bound, 4 classes must be eligible
    sampler = EpisodeSampler(x, y, ways=4, shots=1, queries=advised - 1)
    assert sampler.num_classes >= 4
