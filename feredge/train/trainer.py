"""One trainer for every registered model: single process or torchrun/DDP, resumable, logged.

Data stay as uint8 tensors on the training device; batches are gathered, augmented and normalised
there. Every epoch reseeds its own generators from (seed, epoch), so a resumed run replays exactly
the batches and augmentations an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from feredge import __version__, artifact
from feredge.config import TrainConfig
from feredge.data.splits import stratified_holdout
from feredge.data.store import ATTRIBUTES, Split, load
from feredge.errors import FeredgeError
from feredge.artifact import Artifact, InputSpec
from feredge.metrics import metrics
from feredge.models import create_model, model_info
from feredge.train import tensor_ops as ops
from feredge.train.checkpoint import load_into, read_meta, read_state_dict, save_checkpoint
from feredge.train.inference import predict_logits

STATE_FILE = "last_state.pt"
TEACHER_CACHE = "teacher_logits-{}.npy"  # one per teacher: the first 16 hex digits of its sha256


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class Teacher:
    """A frozen network to distil from, with the input it expects."""

    path: Path
    sha256: str  # recorded in every checkpoint: a path such as the shipped model's is later replaced
    network: torch.nn.Module
    spec: InputSpec
    crop: int | None


def teacher_paths(teacher: str) -> list[str]:
    """The checkpoints a ``teacher`` setting names: one path, or several separated by commas."""
    return [p.strip() for p in teacher.split(",") if p.strip()]


@dataclass
class DeviceData:
    """A split resident on the training device."""

    images: torch.Tensor
    labels: torch.Tensor
    soft: torch.Tensor | None
    attrs: torch.Tensor | None

    @classmethod
    def from_split(cls, split: Split, device: torch.device) -> "DeviceData":
        tensor = lambda a: None if a is None else torch.as_tensor(np.ascontiguousarray(a)).to(device)  # noqa: E731
        return cls(tensor(split.images), tensor(split.labels), tensor(split.soft), tensor(split.attrs))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _init_dist(device: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    rank = dist.get_rank()
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return Dist(rank, world)


def train_val_splits(cfg: TrainConfig) -> tuple[Split, Split, dict]:
    """Training split and validation split (carved from training unless cfg.val_split names one)."""
    ds = load(Path(cfg.data))
    if "train" not in ds.splits:
        raise FeredgeError(f"{cfg.data}: no 'train' split")
    train = ds.splits["train"]
    if cfg.limit_train:
        keep, _ = stratified_holdout(np.asarray(train.labels), 1 - min(cfg.limit_train / len(train), 1.0), cfg.seed)
        train = train.subset(keep)
    if cfg.val_split:
        if cfg.val_split not in ds.splits:
            raise FeredgeError(f"{cfg.data}: no split {cfg.val_split!r} for validation")
        return train, ds.splits[cfg.val_split], ds.meta
    keep, hold = stratified_holdout(np.asarray(train.labels), cfg.val_fraction, cfg.seed)
    return train.subset(keep), train.subset(hold), ds.meta


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


def _optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "radam":
        return torch.optim.RAdam(groups, lr=cfg.lr, decoupled_weight_decay=True)
    raise FeredgeError(f"field 'optimizer' is {cfg.optimizer!r}, expected sgd, adamw or radam")


def _scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps: int):
    """Per-step schedulers (onecycle, cosine) or per-epoch ones (plateau on val accuracy, step)."""
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps + 1,
                                                   pct_start=cfg.warmup_pct, div_factor=25, final_div_factor=1e3)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs * steps, eta_min=cfg.lr * 1e-3)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, "max", cfg.plateau_factor, cfg.plateau_patience, min_lr=1e-6)
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, cfg.step_size, cfg.step_gamma)
    raise FeredgeError(f"field 'scheduler' is {cfg.scheduler!r}, expected onecycle, cosine, plateau or step")


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


def _tensorboard(out: Path):
    """A TensorBoard writer when the tensorboard package is installed, else None (CSV/JSON logs remain)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tb"))


class Trainer:
    """Holds the model, optimiser and data for one run; ``fit()`` runs the epochs."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dist = _init_dist(self.device.type)
        self.out = Path(cfg.out)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        train, val, self.data_meta = train_val_splits(cfg)
        self.aux = _check_multitask(cfg, train)
        self.classes = self.data_meta["classes"]
        self.train = DeviceData.from_split(train, self.device)
        self.views = self._detector_views(train)
        self.val = val
        self.spec = model_info(cfg.model).input_spec
        self.eval_crop = self.spec.size if cfg.ten_crop else None
        side = min(np.asarray(train.images).shape[1:3])
        if cfg.ten_crop and self.spec.size >= side:
            raise FeredgeError(f"ten_crop cuts {self.spec.size}-pixel crops ({cfg.model}'s input) out of {side}-pixel "
                               "images: crops must be smaller than the images; set ten_crop=false or pick another model")
        torch.manual_seed(cfg.seed)
        self.model = create_model(cfg.model, num_classes=len(self.classes), **cfg.model_kwargs)
        self._warm_start()
        self.model.to(self.device)
        self.cuda = self.device.type == "cuda"
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = self.model
        self.ema, self.updates = self._ema_copy(), 0
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.cuda else None)
        self.per_rank_batch = max(cfg.batch_size // self.dist.world, 1)
        self.steps = max(len(self.train) // self.dist.world // self.per_rank_batch, 1)
        if cfg.max_steps_per_epoch:
            self.steps = min(self.steps, cfg.max_steps_per_epoch)
        self.opt = _optimizer(cfg, self.model)
        self.sched = _scheduler(cfg, self.opt, self.steps)
        self.amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if self.cuda and cfg.amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.start_epoch, self.best, self.history = 0, -1.0, []
        self.tb = _tensorboard(self.out) if self.dist.main else None
        self.teachers = self._load_teachers()
        self.teacher_sha256 = {str(t.path): t.sha256 for t in self.teachers}
        self.teacher_logits = self._offline_teacher_logits(train) if cfg.teacher and cfg.teacher_tta != "none" else None

    def _ema_copy(self) -> torch.nn.Module | None:
        """A frozen copy whose weights follow the trained ones as an exponential moving average (cfg.ema):
        FER2013's noisy labels make single-step weights jumpy, the average is steadier."""
        if not self.cfg.ema:
            return None
        import copy

        return copy.deepcopy(self.model).eval().requires_grad_(False)

    def _update_ema(self) -> None:
        """One EMA step; the decay ramps up over the first updates so a fresh model is not averaged with noise."""
        self.updates += 1
        decay = min(self.cfg.ema, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for avg, now in zip(self.ema.state_dict().values(), self.model.state_dict().values()):
                if avg.dtype.is_floating_point:
                    avg.lerp_(now, 1 - decay)
                else:
                    avg.copy_(now)

    @property
    def kept(self) -> torch.nn.Module:
        """The weights that are validated and saved: the EMA when there is one."""
        return self.ema if self.ema is not None else self.model

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

    def _load_teachers(self) -> list[Teacher]:
        """The frozen teacher networks cfg.teacher names (comma-separated checkpoints; their logits are averaged,
        an ensemble being a stronger teacher than any of its members)."""
        if not self.cfg.teacher:
            if self.cfg.teacher_tta != "none":
                raise FeredgeError(f"teacher_tta={self.cfg.teacher_tta}: needs a teacher (--set teacher=CHECKPOINT)")
            return []
        from feredge.train.checkpoint import load_checkpoint

        teachers = []
        for path in map(Path, teacher_paths(self.cfg.teacher)):
            network, meta = load_checkpoint(path)
            if list(meta.classes) != self.classes:
                raise FeredgeError(f"{path}: teacher classes {list(meta.classes)} differ from the data's {self.classes}")
            teachers.append(Teacher(path, artifact.file_sha256(path), network.to(self.device).eval().requires_grad_(False),
                                    meta.input_spec, meta.details.get("eval_crop")))
        return teachers

    def _offline_teacher_logits(self, train: Split) -> torch.Tensor:
        """The teachers' mean ten-crop logits of the un-augmented training images, computed once per run.

        A ten-crop teacher is stronger than the teacher on one augmented view, and distilling from fixed
        logits costs the student's time only (3x faster epochs on CPU for feredge-s → feredge-n). Each
        teacher's logits are cached in the run folder, keyed by its and the images' sha256, so a resumed run
        reuses them, a changed teacher or data does not, and adding a teacher computes only its own.
        """
        images = np.ascontiguousarray(train.images)
        images_sha = hashlib.sha256(images.tobytes()).hexdigest()
        per_teacher = []
        for teacher in self.teachers:
            sha = teacher.sha256
            cache = self.out / TEACHER_CACHE.format(sha[:16])
            key, stamp = {"teacher_sha256": sha, "tta": self.cfg.teacher_tta, "images_sha256": images_sha}, cache.with_suffix(".json")
            if cache.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == key:
                per_teacher.append(np.load(cache, allow_pickle=False))
                continue
            print(f"teacher {teacher.path}: {self.cfg.teacher_tta} logits of {len(train.labels)} training images "
                  "(once per run)", flush=True)
            logits = predict_logits(teacher.network, images, teacher.spec, self.cfg.teacher_tta, teacher.crop,
                                    batch_size=256 if self.cuda else 32, device=str(self.device))  # CPU: 32 is 2x faster
            if self.dist.main:
                self.out.mkdir(parents=True, exist_ok=True)
                buf = io.BytesIO()
                np.save(buf, logits.astype(np.float32), allow_pickle=False)
                artifact.atomic_write_bytes(cache, buf.getvalue())
                artifact.atomic_write_text(stamp, json.dumps(key))
            per_teacher.append(logits)
        self.teachers = []  # no longer needed: free their memory
        return torch.as_tensor(np.mean(per_teacher, 0), dtype=torch.float32).to(self.device)

    def _detector_views(self, train: Split) -> torch.Tensor | None:
        """Per training image, the affine that cuts the runtime's crop of the detector's box out of it
        (identity where the detector found nothing), when cfg.detector_crops asks for them."""
        if not self.cfg.detector_crops:
            return None
        from feredge.data.face_boxes import crop_views
        from feredge.vision.crop import FACE_MARGIN

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
        if self.cfg.soft_labels and self.train.soft is not None:
            target = self.train.soft[idx].float()
        else:
            target = F.one_hot(self.train.labels[idx], k).float()
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
            with torch.no_grad():
                logits_t = torch.stack([tc.network(self._model_input(x, tc.spec)).float() for tc in self.teachers])
                soft = F.softmax(logits_t.mean(0) / t, 1)
        return F.kl_div(F.log_softmax(logits.float() / t, 1), soft, reduction="batchmean") * t * t

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
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
                loss, logits = self._loss(x, target, soft, idx)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            if cfg.scheduler in ("onecycle", "cosine"):
                self.sched.step()
            if self.ema is not None:
                self._update_ema()
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
        return metrics(logits, np.asarray(self.val.labels), self.classes)

    def _meta(self, epoch: int, val: dict) -> Artifact:
        return Artifact(
            "checkpoint", self.cfg.model, tuple(self.classes), self.spec,
            model_kwargs={k: v for k, v in self.cfg.model_kwargs.items() if k != "pretrained"},
            versions={"feredge": __version__, "torch": torch.__version__},
            details={
                "eval_crop": self.eval_crop,
                "epoch": epoch + 1,
                "metrics": {"val_accuracy": val["accuracy"], "val_mean_class_accuracy": val["mean_class_accuracy"]},
                "config": dataclasses.asdict(self.cfg),
                **({"teacher_sha256": self.teacher_sha256} if self.teacher_sha256 else {}),
                "data": {"dataset": self.data_meta.get("dataset"), "path": self.cfg.data,
                         "validation": self.cfg.val_split or f"{self.cfg.val_fraction:.0%} of train, stratified, seed {self.cfg.seed}"},
            })

    def _save(self, epoch: int, val: dict, improved: bool) -> None:
        meta = self._meta(epoch, val)
        save_checkpoint(self.kept, self.out / "last.safetensors", meta)
        if improved:
            save_checkpoint(self.kept, self.out / "best.safetensors", meta)
        buf = io.BytesIO()
        state = {"epoch": epoch + 1, "best": self.best, "history": self.history,
                 "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                 "scaler": self.scaler.state_dict()}
        if self.ema is not None:  # last.safetensors holds the average: the trained weights go here
            state.update(model=self.model.state_dict(), ema_updates=self.updates)
        torch.save(state, buf)
        artifact.atomic_write_bytes(self.out / STATE_FILE, buf.getvalue())  # a kill mid-write keeps the previous state

    def resume(self) -> None:
        """Continue from out/last.safetensors + last_state.pt (weights-only loading)."""
        state_path = self.out / STATE_FILE
        if not state_path.is_file():
            raise FeredgeError(f"{state_path}: nothing to resume (no state file from an earlier run)")
        last = self.out / "last.safetensors"
        self._check_same_run(read_meta(last).details.get("config", {}), last)
        load_into(self.model, read_state_dict(last), str(last))
        try:
            state = torch.load(state_path, map_location=self.device, weights_only=True)
        except Exception as exc:  # truncated / foreign file: torch raises many types
            raise FeredgeError(f"{state_path}: cannot be read ({exc.__class__.__name__}); the run cannot resume "
                               "from it — start again with --overwrite, or warm-start with --set init=" + str(last)) from None
        if self.ema is not None:
            self.ema.load_state_dict(self.model.state_dict())
            self.model.load_state_dict(state["model"])
            self.updates = state["ema_updates"]
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.best, self.history = state["epoch"], state["best"], state["history"]

    def _check_same_run(self, old: dict, where: Path) -> None:
        """--resume continues the *same* run: changed data or hyper-parameters would silently mix two runs."""
        ignore = ("out", "device", "data")
        changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in dataclasses.asdict(self.cfg).items()
                   if k not in ignore and k in old and _plain(old[k]) != _plain(v)]
        if old.get("data") and Path(old["data"]).resolve() != Path(self.cfg.data).resolve():
            changed.insert(0, f"data {old['data']!r} -> {self.cfg.data!r}")
        if changed:
            raise FeredgeError(f"{where}: --resume with settings that differ from the run's: {'; '.join(changed)}; "
                               "resume with the same settings, or start a new run (another --out, or --set init=…)")

    def _log(self, row: dict) -> None:
        self.history.append(row)
        keys = list(row)
        lines = [",".join(keys)] + [",".join(f"{r.get(k, '')}" for k in keys) for r in self.history]
        artifact.atomic_write_text(self.out / "log.csv", "\n".join(lines) + "\n")
        artifact.atomic_write_text(self.out / "log.json", json.dumps(self.history, indent=1))
        if self.tb is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.tb.add_scalar(key, value, row["epoch"])
            self.tb.flush()

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
            row.update(val_accuracy=val["accuracy"], val_mean_class_accuracy=val["mean_class_accuracy"],
                       lr=self.opt.param_groups[0]["lr"], seconds=time.perf_counter() - t0)
            if self.dist.main:
                self._log(row)
                self._save(epoch, val, improved)
                print(f"epoch {epoch + 1}: loss {row['train_loss']:.4f} train {row['train_accuracy']:.4f} "
                      f"val {val['accuracy']:.4f} (mean-class {val['mean_class_accuracy']:.4f}) "
                      f"{row['images_per_s']:.0f} img/s {row['seconds']:.0f}s{' *' if improved else ''}", flush=True)
            if cfg.early_stop and stale >= cfg.early_stop:
                break
        self._barrier()
        return {"best": self.best, "epochs": len(self.history), "out": str(self.out)}

    def _barrier(self) -> None:
        if self.dist.world > 1:
            import torch.distributed as dist

            dist.barrier()


def _plain(value):
    """Config values as JSON would store them (tuples as lists), for comparing a saved config."""
    return json.loads(json.dumps(value))


RUN_FILES = ("last.safetensors", "last.safetensors.json", "best.safetensors", "best.safetensors.json", STATE_FILE,
             "log.csv", "log.json")


def run_config(out: Path) -> dict:
    """The settings a run in ``out`` was started with ({} when it has none), so --resume needs no repeats."""
    last = Path(out) / "last.safetensors"
    if not last.is_file():
        return {}
    return dict(read_meta(last).details.get("config", {}))


def _claim_out(out: Path, resume: bool, overwrite: bool) -> list[Path]:
    """A finished or running run in ``out`` is never replaced without --overwrite; returns the files to replace."""
    artifact.check_folder(out)
    found = [out / name for name in RUN_FILES if (out / name).exists()]
    if resume:
        if overwrite:
            raise FeredgeError("--resume continues the run in --out, --overwrite replaces it: choose one")
        return []
    if found and not overwrite:
        raise FeredgeError(f"{out}: already holds a training run ({found[0].name}); pass --resume to continue it, "
                           "--overwrite to replace it, or choose another --out")
    return found


def train(cfg: TrainConfig, resume: bool = False, stop_after: int | None = None, overwrite: bool = False) -> dict:
    if not cfg.data:
        raise FeredgeError("no training data: pass --data DIR (a folder made by `feredge data prepare`)")
    if stop_after is not None and stop_after < 1:
        raise FeredgeError(f"--stop-after {stop_after}: expected a positive number of epochs")
    replaced = _claim_out(Path(cfg.out), resume, overwrite)
    trainer = Trainer(cfg)
    for path in replaced:  # only once the new run is set up: a bad setting leaves the old run intact
        path.unlink()
    if resume:
        trainer.resume()
    return trainer.fit(stop_after)
