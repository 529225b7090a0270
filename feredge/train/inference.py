"""Logits of a torch model in memory on uint8 images, with test-time augmentation: training's validation,
distillation and soups, which hold the model itself (files are classified by the runtime's `Classifier`)."""

from __future__ import annotations

import numpy as np

from feredge.config import TTA, TTA_MODES


def predict_logits(model, images: np.ndarray, spec, tta: str = TTA, crop: int | None = None,
                   batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """Logits for uint8 NHWC ``images``; TTA averages logits over views.

    ``crop`` is the training crop size for models trained on crops (vgg-a's 40 of 48): single-pass
    then takes the centre crop, ten-crop its ten crops; otherwise ten-crop uses 7/8 of the side.
    """
    import torch

    from feredge.train.tensor_ops import normalize, ten_crop, to_float

    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}")
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = to_float(torch.from_numpy(np.array(images[start:start + batch_size])).to(device), spec.channels)
            side = x.shape[-1]
            if tta == "ten-crop":
                views = ten_crop(x, crop or round(side * 7 / 8))
                logits = model(normalize(views, spec)).view(x.shape[0], 10, -1).mean(1)
            else:
                if crop is not None and crop < side:
                    o = (side - crop) // 2
                    x = x[..., o:o + crop, o:o + crop]
                logits = model(normalize(x, spec))
                if tta == "hflip":
                    logits = (logits + model(normalize(x.flip(-1), spec))) / 2
            out.append(logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
