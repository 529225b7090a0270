"""Prior correction: balanced decisions from a network trained on imbalanced classes.

FER2013's training classes range from 1.5 % (disgust) to 25 % (happy), and cross-entropy teaches the
network that prior: its argmax favours the common classes, which costs mean-class accuracy. Subtracting
tau·log(prior) from the logits (Menon et al. 2021, "Long-tail learning via logit adjustment"; tau = 1 is
the Bayes rule for the balanced error) trades a little top-1 for recall of the rare classes. Folded into
the classifier's bias it costs nothing at inference and travels into every export. The sweep below shows
what each tau costs and gains on the validation carve; the shipped tau (recorded in the sidecar) was chosen
on real photos, with validation as a floor (README, "Training campaign").

    python -m feredge.train.prior CHECKPOINT --data PREPARED    # validation accuracy for a range of tau
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from feredge.config import config_from_dict
from feredge.data.splits import train_val_splits
from feredge.errors import FeredgeError
from feredge.metrics import metrics
from feredge.models.checkpoint import load_checkpoint, read_meta
from feredge.train.inference import predict_logits

TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)


def class_prior(labels: np.ndarray, n: int) -> np.ndarray:
    """Share of each of ``n`` classes in the training labels (every class must occur)."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=n)[:n]
    if (counts == 0).any():
        raise FeredgeError(f"training labels lack class(es) {np.flatnonzero(counts == 0).tolist()}: "
                           "their prior is zero and log(0) has no correction")
    return counts / counts.sum()


def classifier(model: torch.nn.Module, n: int) -> torch.nn.Linear:
    """The network's last linear layer with ``n`` outputs and a bias: the one whose bias is the logits' offset."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == n and m.bias is not None]
    if not layers:
        raise FeredgeError(f"{type(model).__name__}: no linear classifier with {n} outputs and a bias to correct")
    return layers[-1]


def correct_for_prior(model: torch.nn.Module, prior: np.ndarray, tau: float) -> None:
    """Subtract tau·log(prior) from the classifier's bias, in place."""
    layer = classifier(model, len(prior))
    with torch.no_grad():
        layer.bias -= torch.as_tensor(tau * np.log(prior), dtype=layer.bias.dtype, device=layer.bias.device)


def sweep(logits: np.ndarray, labels: np.ndarray, prior: np.ndarray, classes: list[str],
          taus: tuple[float, ...] = TAUS) -> list[dict]:
    """Top-1 and mean-class accuracy of the corrected logits for each tau."""
    rows = []
    for tau in taus:
        m = metrics(logits - tau * np.log(prior), labels, classes)
        rows.append({"tau": tau, "accuracy": m["accuracy"], "mean_class_accuracy": m["mean_class_accuracy"]})
    return rows


def carve_prior_and_validation(checkpoint: Path, data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The class prior of the checkpoint's own training carve of ``data``, and its validation images and labels."""
    cfg = dict(read_meta(checkpoint).details.get("config", {}))
    if not cfg:
        raise FeredgeError(f"{checkpoint}: its sidecar records no training config, so its training carve is unknown")
    train, val, meta = train_val_splits(config_from_dict({**cfg, "data": str(data)}, str(checkpoint)))
    return class_prior(np.asarray(train.labels), len(meta["classes"])), np.asarray(val.images), np.asarray(val.labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="the prepared data the checkpoint trained on")
    parser.add_argument("--tau", type=float, nargs="+", default=list(TAUS))
    args = parser.parse_args()
    prior, images, labels = carve_prior_and_validation(args.checkpoint, args.data)
    model, info = load_checkpoint(args.checkpoint)
    if "prior_correction" in info.details:
        raise SystemExit(f"{args.checkpoint}: already prior-corrected ({info.details['prior_correction']}); "
                         "sweep the checkpoint it was made from")
    logits = predict_logits(model, images, info.input_spec, "none", info.details.get("eval_crop"), device="cpu")
    print(f"{'tau':>5} {'validation':>10} {'mean-class':>10}")
    for row in sweep(logits, labels, prior, list(info.classes), tuple(args.tau)):
        print(f"{row['tau']:5.2f} {100 * row['accuracy']:10.2f} {100 * row['mean_class_accuracy']:10.2f}")


if __name__ == "__main__":
    main()
