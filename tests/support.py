"""What the tests share besides fixtures: the tiny model's settings and synthetic faces (imported by test
files and conftest alike; no test file imports another)."""

from __future__ import annotations

import numpy as np

from feredge.config import TrainConfig, config_from_dict

#: The tiny feredge-s every training test uses: a few thousand parameters, seconds per epoch on 2 cores.
SMALL = {"widths": [8, 16, 16, 16], "depths": [1, 1, 1, 1], "stem": 8}


def small_cfg(data, out, **kw) -> TrainConfig:
    """A short CPU training run of the tiny model on ``data`` into ``out``; ``kw`` overrides any field."""
    base = dict(data=str(data), out=str(out), model="feredge-s", model_kwargs=SMALL, epochs=2, batch_size=16,
                lr=0.05, val_fraction=0.25, device="cpu", rotate=5.0, erasing=0.1)
    base.update(kw)
    return config_from_dict(base, "test")


def make_fer_images(n_per_class: int, seed: int = 0, side: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic, learnable faces: each class draws a bright bar at its own position."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(7):
        for _ in range(n_per_class):
            img = rng.integers(0, 60, (side, side), dtype=np.uint8)
            row = 4 + c * 6
            img[row:row + 4, 8:40] = 200 + rng.integers(0, 50)
            images.append(img)
            labels.append(c)
    return np.stack(images)[..., None], np.array(labels)
