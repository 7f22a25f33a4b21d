"""Write CIFAR-10-shaped binary files (the real format: 5 × 10,000 training records and 10,000 test records of
1 label byte + 3,072 pixel bytes) with synthetic, learnable images, for timing the CIFAR-10 recipes end to end on
a machine that cannot download the real data set. Each class is a smooth random colour pattern plus noise.

Usage:  python bench/make_cifar_files.py DATA_DIR      # then ATLAS_DATA=DATA_DIR python -m core train --recipe …
The files go to DATA_DIR/cifar10/cifar-10-batches-bin/, where `python -m core data verify cifar10` looks. Times
measured on them say nothing about accuracy on CIFAR-10.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from core.data.files import CIFAR_BATCHES, CIFAR_DIR  # noqa: E402

PER_FILE = 10_000


def images(labels: np.ndarray, templates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, 40, (len(labels), 3, 32, 32))
    return np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = Path(sys.argv[1]) / "cifar10" / CIFAR_DIR
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    coarse = rng.uniform(40, 215, (10, 3, 4, 4))
    templates = coarse.repeat(8, axis=2).repeat(8, axis=3)  # 4×4 colour blocks, 8 pixels each
    for name in CIFAR_BATCHES["train"] + CIFAR_BATCHES["test"]:
        labels = rng.integers(0, 10, PER_FILE).astype(np.uint8)
        pixels = images(labels, templates, rng).reshape(PER_FILE, -1)
        (folder / name).write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())
    print(f"wrote {len(CIFAR_BATCHES['train']) * PER_FILE} training and {PER_FILE} test records to {folder}")


if __name__ == "__main__":
    main()
