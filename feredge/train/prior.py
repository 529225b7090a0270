"""Prior correction: balanced decisions from a network trained on imbalanced classes.

FER2013's training classes range from 1.5 % (disgust) to 25 % (happy), and cross-entropy teaches the
network that prior: its argmax favours the common classes, which costs mean-class accuracy. Subtracting
tau·log(prior) from the logits (Menon et al. 2021, "Long-tail learning via logit adjustment"; tau = 1 is
the Bayes rule for the balanced error) trades a little top-1 for recall of the rare classes. Folded into
the classifier's bias it costs nothing at inference and travels into every export. The sweep below shows
what each tau costs and gains on the validation carve; the shipped tau (recorded in the sidecar) was chosen
on real photos, with validation as a floor (campaign/README.md, "Real photos: every candidate").

    python -m feredge.train.prior CHECKPOINT --data PREPARED    # validation accuracy for a range of tau
    python -m feredge.train.prior CORRECTED --undo OUT           # the weights as trained, correction removed
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from feredge.artifact import file_sha256
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
    layers = [m for m in model.modules()
              if isinstance(m, torch.nn.Linear) and m.out_features == n and m.bias is not None]
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


def _carve(checkpoint: Path, data: Path):
    cfg = dict(read_meta(checkpoint).details.get("config", {}))
    if not cfg:
        raise FeredgeError(f"{checkpoint}: its sidecar records no training config, so its training carve is unknown")
    return train_val_splits(config_from_dict({**cfg, "data": str(data)}, str(checkpoint)))


def carve_prior(checkpoint: Path, data: Path) -> np.ndarray:
    """The class prior of the checkpoint's own training carve of ``data``."""
    train, _, meta = _carve(checkpoint, data)
    return class_prior(np.asarray(train.labels), len(meta["classes"]))


def carve_prior_and_validation(checkpoint: Path, data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The class prior of the checkpoint's own training carve of ``data``, and its validation images and labels."""
    train, val, meta = _carve(checkpoint, data)
    return class_prior(np.asarray(train.labels), len(meta["classes"])), np.asarray(val.images), np.asarray(val.labels)


def refuse_corrected(details: dict, where: str, hint: str = "") -> None:
    """A correction applies once: sweeping or correcting a corrected file would shift its logits twice."""
    if "prior_correction" in details:
        raise FeredgeError(f"{where}: already prior-corrected (tau {details['prior_correction']['tau']}){hint}")


def correction_record(prior: np.ndarray, tau: float, details: dict) -> dict:
    """The sidecar's ``details`` after a correction: the record says what was subtracted, and the metrics
    measured before it move under it (they are not the corrected weights')."""
    details = dict(details)
    refuse_corrected(details, "the sidecar's details")
    record = {"tau": tau, "prior": [round(float(p), 6) for p in prior], "of": "the training carve's classes"}
    if "metrics" in details:
        record["metrics_before"] = details.pop("metrics")
    details["prior_correction"] = record
    return details


def remove_correction(checkpoint: Path, out: Path) -> Path:
    """Write ``checkpoint`` with its recorded prior correction undone, as the network trained it: the form a
    warm restart or a distillation teacher needs (a corrected teacher would pass its shift on, and the
    student's own correction would then count it twice)."""
    from feredge.train.checkpoint import save_checkpoint

    info = read_meta(checkpoint)
    details = dict(info.details)
    record = details.pop("prior_correction", None)
    if record is None:
        raise FeredgeError(f"{checkpoint}: its sidecar records no prior correction to remove")
    model, _ = load_checkpoint(checkpoint)
    correct_for_prior(model, np.asarray(record["prior"], np.float64), -float(record["tau"]))
    if "metrics_before" in record:
        details["metrics"] = record["metrics_before"]
    save_checkpoint(model, out, info.derive("checkpoint", versions=info.versions,
                                            sources={Path(checkpoint).name: file_sha256(checkpoint)},
                                            **details))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, help="the prepared data the checkpoint trained on (for the sweep)")
    parser.add_argument("--tau", type=float, nargs="+", default=list(TAUS))
    parser.add_argument("--undo", type=Path, metavar="OUT",
                        help="instead of sweeping, write the checkpoint with its recorded correction removed")
    args = parser.parse_args()
    try:
        if args.undo is not None:
            if args.undo.exists():
                raise FeredgeError(f"{args.undo}: already exists; choose another path")
            print(remove_correction(args.checkpoint, args.undo))
            return
        if args.data is None:
            parser.error("--data is required for the sweep")
        refuse_corrected(read_meta(args.checkpoint).details, str(args.checkpoint),
                         "; sweep the checkpoint it was made from (--undo writes it)")
        prior, images, labels = carve_prior_and_validation(args.checkpoint, args.data)
        model, info = load_checkpoint(args.checkpoint)
    except FeredgeError as exc:
        parser.exit(1, f"error: {exc}\n")
    logits = predict_logits(model, images, info.input_spec, "none", info.details.get("eval_crop"), device="cpu")
    print(f"{'tau':>5} {'validation':>10} {'mean-class':>10}")
    for row in sweep(logits, labels, prior, list(info.classes), tuple(args.tau)):
        print(f"{row['tau']:5.2f} {100 * row['accuracy']:10.2f} {100 * row['mean_class_accuracy']:10.2f}")


if __name__ == "__main__":
    main()
