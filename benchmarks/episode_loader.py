"""Episodes per second from a folder of PNG files, through ``DataLoader`` with 0 and 2 workers.

Writes generated shapes (``ml.make_shapes``: 64 classes x 20 PNG drawings, 84 x 84 pixels) to a temporary folder,
then reads 5-way 5-shot 15-query episodes from it with ``ml.episode_loader`` over a data set that opens and
decodes each PNG when it is drawn (nothing held in memory).  Prints episodes per second for each number of
workers: the first episode (which pays for starting the workers) is not counted.

    python benchmarks/episode_loader.py                # ~1 minute on 2 cores
    python benchmarks/episode_loader.py --episodes 200 --workers 0 2 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

import metalearn_lite as ml


class PngFolder(Dataset):
    """``(image (1, H, W) float in [0, 1], class)`` for every PNG under ``root/<class>/``, decoded on access."""

    def __init__(self, root: Path) -> None:
        classes = sorted(p for p in root.iterdir() if p.is_dir())
        self.files = [f for c in classes for f in sorted(c.glob("*.png"))]
        self.targets = [i for i, c in enumerate(classes) for _ in sorted(c.glob("*.png"))]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.files[i]) as im:
            pixels = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        return torch.from_numpy(pixels).unsqueeze(0), self.targets[i]


def episodes_per_second(data: Dataset, workers: int, episodes: int) -> float:
    loader = ml.episode_loader(data, ways=5, shots=5, queries=15, batches=episodes + 1, seed=0, num_workers=workers)
    it = iter(loader)
    next(it)  # worker start-up
    start = time.perf_counter()
    for _ in range(episodes):
        next(it)
    return episodes / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100, help="timed episodes per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="numbers of loader workers")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = ml.make_shapes(Path(tmp) / "shapes", classes=64, per_class=20, size=84)
        data = PngFolder(root)
        print(f"{len(data)} PNG files, {len(set(data.targets))} classes; 5-way 5-shot 15-query episodes "
              f"({5 * 20} images each), {args.episodes} timed")
        for workers in args.workers:
            rate = episodes_per_second(data, workers, args.episodes)
            print(f"  num_workers={workers}: {rate:6.1f} episodes/s ({rate * 100:7.0f} images/s)")


if __name__ == "__main__":
    main()
