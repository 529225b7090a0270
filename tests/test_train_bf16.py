"""bf16 steps on the CPU: what they change (the step's arithmetic) and what they keep (fp32 weights, a
resumable run), and the notice on CPUs that would emulate them."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from feredge.train import trainer as trainer_module
from feredge.train.trainer import Trainer, native_cpu_bf16
from tests.support import small_cfg


def test_cpu_bf16_runs_the_model_in_bf16_and_keeps_fp32_weights(prepared_fer, tmp_path):
    """cpu_bf16 autocasts the model's step (convolutions see bf16), while weights, optimiser state and the
    saved checkpoint stay fp32, so a run can switch the setting off and resume nothing else changed."""
    trainer = Trainer(small_cfg(prepared_fer, tmp_path / "run", epochs=3, lr=0.1, cpu_bf16=True))
    seen: list[torch.dtype] = []
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    trainer.fit(stop_after=2)
    assert seen and seen[0] == torch.bfloat16  # the first training step ran in bf16
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert all(np.isfinite(row["train_loss"]) for row in log) and log[-1]["train_loss"] < log[0]["train_loss"]
    weights = load_file(str(tmp_path / "run" / "last.safetensors"))
    assert all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())
    # a machine without AMX goes on in fp32: the setting is how the step is computed, not another run
    more = Trainer(small_cfg(prepared_fer, tmp_path / "run", epochs=3, lr=0.1, cpu_bf16=False))
    more.resume()
    assert more.start_epoch == 2 and more.amp_dtype is None
    more.fit()
    assert len(json.loads((tmp_path / "run" / "log.json").read_text())) == 3


def test_a_cpu_without_bf16_hardware_is_told_how_to_train_in_fp32(prepared_fer, tmp_path, monkeypatch, capsys):
    """Emulated bf16 ran 13x slower than fp32 on an EPYC without AVX512-BF16: the run says so and how to avoid it."""
    if sys.platform == "linux" and platform.machine() == "x86_64":  # torch's probe agrees with the kernel's flags
        flags = set(Path("/proc/cpuinfo").read_text().split())
        assert native_cpu_bf16() == bool(flags & {"amx_tile", "avx512_bf16"})
    monkeypatch.setattr(trainer_module, "native_cpu_bf16", lambda: False)
    Trainer(small_cfg(prepared_fer, tmp_path / "bf16", cpu_bf16=True))
    assert "--set cpu_bf16=false" in capsys.readouterr().err
    Trainer(small_cfg(prepared_fer, tmp_path / "fp32", cpu_bf16=False))
    monkeypatch.setattr(trainer_module, "native_cpu_bf16", lambda: True)
    Trainer(small_cfg(prepared_fer, tmp_path / "amx", cpu_bf16=True))
    assert "cpu_bf16" not in capsys.readouterr().err
