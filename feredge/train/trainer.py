"""One trainer for every registered model: single process or torchrun/DDP, resumable, logged.

Data stay as uint8 tensors on the training device; batches are gathered, augmented and normalised
there. Every epoch reseeds its own generators from (seed, epoch), so a resumed run replays exactly
the batches and augmentations an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from feredge._version import __version__
from feredge.artifact import Artifact, InputSpec
from feredge.config import SELECT_METRICS, TrainConfig
from feredge.data.splits import train_val_splits
from feredge.data.store import ATTRIBUTES, Split
from feredge.errors import FeredgeError
from feredge.metrics import validation_figures
from feredge.models import create_model, model_info
from feredge.models.checkpoint import load_into, read_meta, read_state_dict
from feredge.models.device import torch_device
from feredge.train import tensor_ops as ops
from feredge.train.ddp import Dist, barrier, init_dist
from feredge.train.distill import distill_loss, load_teachers, offline_logits, online_targets
from feredge.train.ema import Ema
from feredge.train.inference import predict_logits
from feredge.train.optim import make_optimizer, make_scheduler
from feredge.train.run_folder import RunFolder, claim_out, clear_leftovers, locked, run_config

__all__ = ["Trainer", "native_cpu_bf16", "run_config", "train"]


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware: elsewhere torch emulates it, and cpu_bf16 slows training down."""
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


@dataclass
class DeviceData:
    """A split resident on the training device."""

    images: torch.Tensor
    labels: torch.Tensor
    soft: torch.Tensor | None
    attrs: torch.Tensor | None

    @classmethod
    def from_split(cls, split: Split, device: torch.device) -> DeviceData:
        tensor = lambda a: None if a is None else torch.as_tensor(np.ascontiguousarray(a)).to(device)  # noqa: E731
        return cls(tensor(split.images), tensor(split.labels), tensor(split.soft), tensor(split.attrs))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _check_multitask(cfg: TrainConfig, train: Split) -> dict[str, float]:
    aux = {k: float(v) for k, v in cfg.aux_weights.items() if float(v) > 0}
    heads = model_info(cfg.model).heads
    unknown = [k for k in aux if k not in heads]
    if unknown:
        raise FeredgeError(f"aux_weights names heads {unknown} that model {cfg.model!r} lacks (it has {list(heads)})")
    if aux and (train.attrs is None or (np.asarray(train.attrs) < 0).all()):
        raise FeredgeError(f"{cfg.data}: the recipe trains auxiliary heads {sorted(aux)} but the data have no "
                           "age/race/gender attributes; use a dataset with attributes (RAF-DB) or set aux_weights={}")
    if aux and (cfg.mixup > 0 or cfg.cutmix > 0):
        raise FeredgeError(f"auxiliary heads {sorted(aux)} cannot train with mixup/cutmix: a mixed image has no "
                           "single age/race/gender label; set mixup=0 cutmix=0 or aux_weights={}")
    return aux


def _check_soft_labels(cfg: TrainConfig, train: Split, val: Split) -> None:
    """Soft labels or FER+ selection on data without FER+ votes would silently train or select on the hard labels."""
    if not cfg.soft_labels and cfg.soft_label_share != 1.0:
        raise FeredgeError(f"soft_label_share={cfg.soft_label_share} mixes soft labels into the target, but "
                           "soft_labels=false: set soft_labels=true too, or drop soft_label_share")
    if cfg.soft_labels and train.soft is None:
        raise FeredgeError(f"{cfg.data}: soft_labels=true but its training split has no soft labels (soft.npy); "
                           "prepare it with --ferplus VOTES.csv, or set soft_labels=false")
    if cfg.select_metric.startswith("ferplus") and val.soft is None:
        raise FeredgeError(f"{cfg.data}: select_metric={cfg.select_metric} but the validation split has no FER+ "
                           "votes (soft.npy); prepare it with --ferplus VOTES.csv, or select by accuracy")


def _epoch_order(cfg: TrainConfig, data: DeviceData, gen: torch.Generator, dist: Dist) -> torch.Tensor:
    """This rank's sample order for the epoch: a permutation, or a class-balanced draw with replacement."""
    n = len(data)
    if cfg.weighted_sampler:
        counts = torch.bincount(data.labels, minlength=int(data.labels.max()) + 1).float()
        weights = (counts.max() / counts)[data.labels]
        order = torch.multinomial(weights, n, replacement=True, generator=gen)
    else:
        order = torch.randperm(n, generator=gen, device=data.labels.device)
    per_rank = n // dist.world
    return order[dist.rank * per_rank:(dist.rank + 1) * per_rank]


class Trainer:
    """Holds the model, optimiser and data for one run; ``fit()`` runs the epochs."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = torch_device(cfg.device)
        self.dist = init_dist(self.device.type)
        self.out = Path(cfg.out)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        train, val, self.data_meta = train_val_splits(cfg)
        self.aux = _check_multitask(cfg, train)
        _check_soft_labels(cfg, train, val)
        self.classes = self.data_meta["classes"]
        self.train = DeviceData.from_split(train, self.device)
        self.views = self._detector_views(train)
        self.val = val
        self.spec = model_info(cfg.model).input_spec
        self.eval_crop = self.spec.size if cfg.ten_crop else None
        side = min(np.asarray(train.images).shape[1:3])
        if cfg.ten_crop and self.spec.size >= side:
            raise FeredgeError(f"ten_crop cuts {self.spec.size}-pixel crops ({cfg.model}'s input) out of "
                               f"{side}-pixel images: crops must be smaller than the images; set ten_crop=false or "
                               "pick another model")
        torch.manual_seed(cfg.seed)
        self.model = create_model(cfg.model, num_classes=len(self.classes), **cfg.model_kwargs)
        self._warm_start()
        self.model.to(self.device)
        self.cuda = self.device.type == "cuda"
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = self.model
        self.ema = Ema(self.model, cfg.ema) if cfg.ema else None
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.cuda else None)
        self.per_rank_batch = max(cfg.batch_size // self.dist.world, 1)
        self.steps = max(len(self.train) // self.dist.world // self.per_rank_batch, 1)
        if cfg.max_steps_per_epoch:
            self.steps = min(self.steps, cfg.max_steps_per_epoch)
        self.opt = make_optimizer(cfg, self.model)
        self.sched = make_scheduler(cfg, self.opt, self.steps)
        if self.cuda:
            self.amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cfg.amp else None
        else:
            self.amp_dtype = torch.bfloat16 if cfg.cpu_bf16 else None
            if cfg.cpu_bf16 and self.dist.main and not native_cpu_bf16():
                print("cpu_bf16: this CPU has neither AMX nor AVX512-BF16, so the bf16 step is emulated (13x slower "
                      "than fp32 on a 2-core EPYC); --set cpu_bf16=false trains in fp32, also on --resume",
                      file=sys.stderr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.start_epoch, self.best, self.history = 0, -1.0, []
        self.run = RunFolder(self.out, self.dist.main)
        self.teachers = load_teachers(cfg.teacher, cfg.teacher_tta, self.classes, self.device)
        self.teacher_sha256 = {str(t.path): t.sha256 for t in self.teachers}
        self.teacher_logits = None
        if cfg.teacher and cfg.teacher_tta != "none":
            self.teacher_logits = offline_logits(self.teachers, train.images, cfg.teacher_tta, self.out, self.device,
                                                 self.dist.main)
            self.teachers = []  # no longer needed: free their memory

    @property
    def kept(self) -> torch.nn.Module:
        """The weights that are validated and saved: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def _warm_start(self) -> None:
        """Load cfg.init's weights; refuse a checkpoint whose validation carve differs on the same data,
        because its training images would then sit in this run's validation split and bias selection."""
        if not self.cfg.init:
            return
        meta = read_meta(Path(self.cfg.init))
        if meta.model != self.cfg.model or list(meta.classes) != self.classes:
            raise FeredgeError(f"{self.cfg.init}: holds {meta.model} with classes {list(meta.classes)}, "
                               f"this run trains {self.cfg.model} with {self.classes}")
        old = meta.details.get("config", {})
        same_data = Path(old.get("data", "")).resolve() == Path(self.cfg.data).resolve()
        carve = ("val_fraction", "val_split", "seed", "limit_train")
        changed = [k for k in carve if old.get(k) != getattr(self.cfg, k)]
        if same_data and changed:
            raise FeredgeError(f"{self.cfg.init}: trained on the same data with a different validation carve "
                               f"({', '.join(f'{k}={old.get(k)!r}' for k in changed)}); use the same values so "
                               "validation stays unseen")
        load_into(self.model, read_state_dict(Path(self.cfg.init)), self.cfg.init)

    def _detector_views(self, train: Split) -> torch.Tensor | None:
        """Per training image, the affine that cuts the runtime's crop of the detector's box out of it
        (identity where the detector found nothing), when cfg.detector_crops asks for them."""
        if not self.cfg.detector_crops:
            return None
        from feredge.config import FACE_MARGIN
        from feredge.data.face_boxes import crop_views

        if train.face_boxes is None:
            raise FeredgeError(f"detector_crops={self.cfg.detector_crops}: {self.cfg.data} has no face boxes; run "
                               f"`feredge data face-boxes {self.cfg.data}` first")
        boxes = np.asarray(train.face_boxes, np.float32)
        found = np.isfinite(boxes).all(1)
        views = np.tile(np.array([1.0, 0.0, 0.0], np.float32), (len(boxes), 1))
        views[found] = crop_views(boxes[found], np.asarray(train.images).shape[2], FACE_MARGIN)
        return torch.as_tensor(views).to(self.device)

    def _targets(self, idx: torch.Tensor) -> torch.Tensor:
        k = len(self.classes)
        target = F.one_hot(self.train.labels[idx], k).float()
        if self.cfg.soft_labels:
            share = self.cfg.soft_label_share
            target = (1 - share) * target + share * self.train.soft[idx].float()
        eps = self.cfg.label_smoothing
        return target * (1 - eps) + eps / k

    def _batch(self, idx: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Augmented images, label targets and (offline teacher) the teacher's soft targets, mixed alike."""
        cfg = self.cfg
        x = ops.to_float(self.train.images[idx], self.spec.channels)
        views = None
        if self.views is not None:
            take = torch.rand(len(idx), generator=gen, device=x.device) < cfg.detector_crops
            views = torch.where(take[:, None], self.views[idx], torch.tensor([1.0, 0.0, 0.0], device=x.device))
        x = ops.random_affine(x, cfg.rotate, cfg.translate, tuple(cfg.scale), cfg.hflip, gen, views)
        target = self._targets(idx)
        k = target.shape[1]
        if self.teacher_logits is not None:
            target = torch.cat([target, F.softmax(self.teacher_logits[idx] / cfg.distill_temperature, 1)], 1)
        if cfg.ten_crop:
            x = ops.ten_crop(x, self.spec.size)
            target = target.repeat_interleave(10, 0)
        if cfg.camera_augment > 0:
            x = ops.random_camera(x, cfg.camera_augment, gen)
        if cfg.erasing > 0:
            x = ops.random_erase(x, cfg.erasing, gen)
        x, target = ops.mix(x, target, cfg.mixup, cfg.cutmix, gen)
        return x, target[:, :k], (target[:, k:] if self.teacher_logits is not None else None)

    def _model_input(self, x: torch.Tensor, spec: InputSpec) -> torch.Tensor:
        x = ops.normalize(ops.match_channels(x, spec.channels), spec)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def _distill(self, x: torch.Tensor, logits: torch.Tensor, soft: torch.Tensor | None) -> torch.Tensor:
        """Hinton distillation: T²·KL(teacher_T ‖ student_T), against the teacher's offline soft targets
        (``soft``) or its output on the same augmented images."""
        t = self.cfg.distill_temperature
        if soft is None:
            soft = online_targets(self.teachers, x, self._model_input, t)
        return distill_loss(logits, soft, t)

    def _loss(self, x: torch.Tensor, target: torch.Tensor, soft: torch.Tensor | None,
              idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted emotion loss (blended with distillation when a teacher is set) plus auxiliary-head losses."""
        inp = self._model_input(x, self.spec)
        outputs = self.net(inp, all_heads=True) if self.aux else {"emotion": self.net(inp)}
        logits = outputs["emotion"]
        loss = self.cfg.emotion_weight * torch.sum(-target * F.log_softmax(logits.float(), 1), 1).mean()
        if self.cfg.teacher:
            a = self.cfg.distill_weight
            loss = (1 - a) * loss + a * self._distill(x, logits, soft)
        for head, weight in self.aux.items():
            labels = self.train.attrs[idx, ATTRIBUTES.index(head)]
            labels = labels.repeat_interleave(len(outputs[head]) // len(labels))  # ten-crop: 10 rows per image
            valid = labels >= 0
            if valid.any():
                loss = loss + weight * F.cross_entropy(outputs[head][valid].float(), labels[valid])
        return loss, logits

    def _train_epoch(self, epoch: int) -> dict:
        from tqdm import tqdm

        cfg = self.cfg
        torch.manual_seed(cfg.seed * 100003 + epoch)
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 100003 + epoch)
        order = _epoch_order(cfg, self.train, gen, self.dist)
        self.model.train()
        total, correct, loss_sum, t0 = 0, 0, 0.0, time.perf_counter()
        bar = tqdm(range(self.steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not self.dist.main, leave=False)
        for step in bar:
            idx = order[step * self.per_rank_batch:(step + 1) * self.per_rank_batch]
            x, target, soft = self._batch(idx, gen)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                loss, logits = self._loss(x, target, soft, idx)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            if cfg.scheduler in ("onecycle", "cosine"):
                self.sched.step()
            if self.ema is not None:
                self.ema.update(self.model)
            if cfg.ten_crop:
                logits = logits.view(len(idx), 10, -1).mean(1)
            correct += int((logits.argmax(1) == self.train.labels[idx]).sum())
            total += len(idx)
            loss_sum += loss.detach().item() * len(idx)
            rate = total * self.dist.world / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}",
                            lr=f"{self.opt.param_groups[0]['lr']:.2e}", img_s=f"{rate:.0f}")
        return {"train_loss": loss_sum / max(total, 1), "train_accuracy": correct / max(total, 1),
                "images_per_s": total * self.dist.world / (time.perf_counter() - t0)}

    def validate(self) -> dict:
        logits = predict_logits(self.kept, self.val.images, self.spec, "none", self.eval_crop, device=str(self.device))
        return validation_figures(logits, np.asarray(self.val.labels), self.val.soft, self.classes)

    def _meta(self, epoch: int, scores: dict) -> Artifact:
        return Artifact(
            "checkpoint", self.cfg.model, tuple(self.classes), self.spec,
            model_kwargs={k: v for k, v in self.cfg.model_kwargs.items() if k != "pretrained"},
            versions={"feredge": __version__, "torch": torch.__version__},
            details={
                "eval_crop": self.eval_crop,
                "epoch": epoch + 1,
                "metrics": scores,
                "config": dataclasses.asdict(self.cfg),
                **({"teacher_sha256": self.teacher_sha256} if self.teacher_sha256 else {}),
                "data": {"dataset": self.data_meta.get("dataset"), "path": self.cfg.data,
                         "validation": self.cfg.val_split
                         or f"{self.cfg.val_fraction:.0%} of train, stratified, seed {self.cfg.seed}"},
            })

    def _save(self, epoch: int, scores: dict, improved: bool) -> None:
        state = {"epoch": epoch + 1, "best": self.best, "history": self.history,
                 "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                 "scaler": self.scaler.state_dict()}
        if self.ema is not None:  # last.safetensors holds the average: the trained weights go here
            state.update(model=self.model.state_dict(), ema_updates=self.ema.updates)
        self.run.save(self.kept, self._meta(epoch, scores), improved, state)

    def resume(self) -> None:
        """Continue from out/last.safetensors + last_state.pt (weights-only loading), which must be one epoch's."""
        state = self.run.read_state(self.device)
        if self.dist.main:
            self.run.settle(state)
        barrier(self.dist)
        self.run.load_last(dataclasses.asdict(self.cfg), self.model)
        if self.ema is not None:
            self.ema.module.load_state_dict(self.model.state_dict())
            self.model.load_state_dict(state["model"])
            self.ema.updates = state["ema_updates"]
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.best, self.history = state["epoch"], state["best"], state["history"]
        if self.dist.main and self.history:  # a kill between a save and its log leaves the log one epoch behind
            self.run.log(self.history)

    def fit(self, stop_after: int | None = None) -> dict:
        """Train to cfg.epochs (or only ``stop_after`` more epochs, to split long runs into pieces)."""
        cfg = self.cfg
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
        stale, end = 0, cfg.epochs if stop_after is None else min(cfg.epochs, self.start_epoch + stop_after)
        for epoch in range(self.start_epoch, end):
            t0 = time.perf_counter()
            row = {"epoch": epoch + 1, **self._train_epoch(epoch)}
            val = self.validate()
            score = val[cfg.select_metric]
            if cfg.scheduler == "plateau":
                self.sched.step(score)
            elif cfg.scheduler == "step":
                self.sched.step()
            improved = score > self.best
            self.best = max(self.best, score)
            stale = 0 if improved else stale + 1
            scores = {f"val_{k}": val[k] for k in SELECT_METRICS if k in val}  # the log row's and the sidecar's
            row.update(scores,
                       lr=self.opt.param_groups[0]["lr"], seconds=time.perf_counter() - t0)
            if self.dist.main:
                self.history.append(row)
                self._save(epoch, scores, improved)
                self.run.log(self.history)  # after the save: the log never lists an epoch whose weights are not saved
                print(f"epoch {epoch + 1}: loss {row['train_loss']:.4f} train {row['train_accuracy']:.4f} "
                      f"val {val['accuracy']:.4f} (mean-class {val['mean_class_accuracy']:.4f}"
                      + (f"; FER+ {val['ferplus_accuracy']:.4f}" if "ferplus_accuracy" in val else "") + ") "
                      f"{row['images_per_s']:.0f} img/s {row['seconds']:.0f}s{' *' if improved else ''}", flush=True)
            if cfg.early_stop and stale >= cfg.early_stop:
                break
        barrier(self.dist)
        return {"best": self.best, "epochs": len(self.history), "out": str(self.out)}



def train(cfg: TrainConfig, resume: bool = False, stop_after: int | None = None, overwrite: bool = False) -> dict:
    if not cfg.data:
        raise FeredgeError("no training data: pass --data DIR (a folder made by `feredge data prepare`)")
    if stop_after is not None and stop_after < 1:
        raise FeredgeError(f"--stop-after {stop_after}: expected a positive number of epochs")
    with locked(Path(cfg.out)):
        replaced = claim_out(Path(cfg.out), resume, overwrite)
        clear_leftovers(Path(cfg.out))
        trainer = Trainer(cfg)
        for path in replaced:  # only once the new run is set up: a bad setting leaves the old run intact
            path.unlink()
        if resume:
            trainer.resume()
        return trainer.fit(stop_after)
