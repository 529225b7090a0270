"""`feredge explain`: Grad-CAM on the last convolutional block — where on the face the model looked.

For images: every detected face gets a heat-map over its crop (exactly the crop the model saw). For a
prepared split: a grid PNG of each class's most confident mistakes, each with its heat-map, because a
model's confident errors say more about it than its average.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from feredge._optional import require
from feredge.config import DEVICE, PER_CLASS
from feredge.errors import FeredgeError

DEFAULT_OUT = Path("runs/explain")
#: What explain writes into its folder; any of them there means the folder holds earlier results.
FILES = ("*.gradcam.png", "mistakes-*.png")


def explain(images: list[Path], model: str | Path | None, data: Path | None, split: str, per_class: int,
            out: Path | None, overwrite: bool, log: Callable[[str], None] = print, device: str = DEVICE) -> list[Path]:
    """`feredge explain`: heat-maps over the faces in ``images`` and/or a grid of ``data``'s mistakes,
    written into a fresh folder (or ``out``, which must not hold earlier results unless ``overwrite``)."""
    from feredge.outputs import output_folder
    from feredge.weights import resolve

    if not images and data is None:
        raise FeredgeError("give images to explain, or a prepared dataset for a split's mistakes")
    if per_class < 1:
        raise FeredgeError(f"per_class {per_class}: expected a positive integer")
    checkpoint = resolve(model, "checkpoint")
    if checkpoint.suffix != ".safetensors":
        raise FeredgeError(f"{checkpoint}: Grad-CAM needs a torch checkpoint (.safetensors or a shipped model's name)")
    folder = output_folder(out, DEFAULT_OUT, FILES, overwrite)
    written = explain_images(list(images), checkpoint, folder, log, device) if images else []
    if data is not None:
        written.append(explain_split(checkpoint, data, split, folder, per_class, device))
    return written


def target_layer(model):
    """The last convolutional block: ``features[-1]`` where the model keeps its trunk in ``features``,
    else the last Conv2d."""
    torch = require("torch")
    features = getattr(model, "features", None)
    if isinstance(features, torch.nn.Sequential) and len(features):
        return features[-1]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise FeredgeError(f"{type(model).__name__}: no convolution to explain")
    return convs[-1]


def grad_cam(model, x) -> tuple[np.ndarray, np.ndarray]:
    """Heat-maps (N, H, W) in [0, 1] at the input size, for each input's predicted class; and the logits."""
    torch = require("torch")
    store: dict = {}
    layer = target_layer(model)
    handle = layer.register_forward_hook(lambda _m, _i, out: store.update(act=out))
    try:
        model.eval()
        x = x.to(next(model.parameters()).device).requires_grad_(True)
        logits = model(x)
        act = store["act"]
        act.retain_grad()
        logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
        weights = act.grad.mean((2, 3), keepdim=True)
        cam = torch.relu((weights * act).sum(1, keepdim=True))
        cam = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).max(1).values.clamp_min(1e-8)[:, None, None]
        return (cam / peak).detach().cpu().numpy(), logits.detach().float().cpu().numpy()
    finally:
        handle.remove()


def overlay(pixels: np.ndarray, cam: np.ndarray, spec) -> np.ndarray:
    """A BGR uint8 picture: the normalised model input (C, H, W) turned back into pixels, under the heat-map."""
    cv2 = require("cv2")
    mean = np.asarray(spec.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(-1, 1, 1)
    img = np.clip((pixels * std + mean) * 255, 0, 255).astype(np.uint8)
    img = cv2.cvtColor(img[0], cv2.COLOR_GRAY2BGR) if img.shape[0] == 1 else img.transpose(1, 2, 0)[..., ::-1].copy()
    heat = cv2.applyColorMap((cam * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(img, 0.55, heat, 0.45, 0)


def _grid(tiles: list[list[tuple[np.ndarray, str]]], row_titles: list[str], path: Path, title: str) -> Path:
    from feredge.commands.plots import pyplot, save

    plt = pyplot()
    rows, cols = len(tiles), max(1, max(len(r) for r in tiles))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols + 1.2, 1.8 * rows), squeeze=False)
    for r, row in enumerate(tiles):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(row):
                image, caption = row[c]
                ax.imshow(image[..., ::-1])
                ax.set_title(caption, fontsize=7)
        axes[r][0].text(-0.15, 0.5, row_titles[r], transform=axes[r][0].transAxes, ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return save(fig, path, dpi=110)


def explain_images(images: list[Path], checkpoint: Path, out: Path,
                   log: Callable[[str], None] = print, device: str = DEVICE) -> list[Path]:
    """One grid per image: each detected face's crop (the Recognizer's, exactly what the model saw) with its
    Grad-CAM, labelled with the prediction. An image without faces is reported; none at all is an error."""
    torch = require("torch")
    from feredge.commands.predict import output_names
    from feredge.recognizer import Recognizer
    from feredge.vision.images import check_image

    checked = [check_image(p) for p in images]  # every input checked before any output is written
    written = []
    with Recognizer(checkpoint, backend="torch", device=device) as rec:
        model, info = rec.classifier.runner.model, rec.info
        spec, classes = info.input_spec, list(info.classes)
        for path, image, name in zip(images, checked, output_names(images)):
            frame = image.read()
            boxes, _, landmarks = rec.detect(frame)
            if not len(boxes):
                log(f"{path}: no faces found, nothing to explain")
                continue
            x = rec.crops(frame, boxes, landmarks)
            cams, _ = grad_cam(model, torch.from_numpy(x))
            probs = rec.classifier.probabilities_of(x, len(x))  # the labels as every command gives them
            tiles = [[(overlay(x[i], cams[i], spec), f"face {i}: {classes[int(p.argmax())]} {p.max():.0%}")
                      for i, p in enumerate(probs)]]
            written.append(_grid(tiles, [""], Path(out) / name.replace(".annotated.jpg", ".gradcam.png"),
                                 f"Grad-CAM of {info.model} on {Path(path).name}"))
    if images and not written:
        raise FeredgeError(f"no faces found in {', '.join(map(str, images))}: no heat-map written")
    return written


def explain_split(checkpoint: Path, data: Path, split: str, out: Path, per_class: int = PER_CLASS,
                  device: str = DEVICE) -> Path:
    """A grid: one row per true class, its ``per_class`` most confident mistakes with heat-maps."""
    torch = require("torch")
    from feredge.data.store import load_split, read_meta
    from feredge.runtime.classifier import Classifier, views

    classifier = Classifier(checkpoint, backend="torch", device=device)  # Grad-CAM's gradients run on its model
    model, info = classifier.runner.model, classifier.info
    spec, classes = info.input_spec, list(info.classes)
    data_classes = list(read_meta(data)["classes"])
    if data_classes != classes:
        raise FeredgeError(f"{checkpoint}: trained on classes {classes}, but {data} has {data_classes}; a grid "
                           "of mistakes would be mislabelled")
    part = load_split(data, split)
    images, labels = np.asarray(part.images), np.asarray(part.labels)
    probs = classifier.probabilities(images)
    pred = probs.argmax(1)
    tiles = []
    for c in range(len(classes)):
        wrong = np.flatnonzero((labels == c) & (pred != c))
        worst = wrong[np.argsort(-probs[wrong].max(1))][:per_class]
        # exactly the input the classifier judged (a crop model's centre crop included)
        x = views(images[worst], spec, "none", info.details.get("eval_crop")) if len(worst) else np.zeros(
            (0, spec.channels, spec.size, spec.size), np.float32)
        cams = grad_cam(model, torch.from_numpy(x))[0] if len(worst) else []
        tiles.append([(overlay(x[k], cams[k], spec), f"→ {classes[pred[i]]} {probs[i].max():.0%}")
                      for k, i in enumerate(worst)])
    return _grid(tiles, classes, Path(out) / f"mistakes-{split}.png",
                 f"{info.model}: most confident mistakes per true class on {split} (Grad-CAM, last conv block)")
