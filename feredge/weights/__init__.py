"""The shipped models: trained weights, their descriptions and model cards live here, by model name."""

from __future__ import annotations

from pathlib import Path

from feredge.config import DEFAULT_MODEL
from feredge.errors import FeredgeError

WEIGHTS_DIR = Path(__file__).resolve().parent
_SUFFIX = {"onnx": ".onnx", "checkpoint": ".safetensors"}
#: A shipped model's ONNX file per precision, named as `feredge export` names them (FORMATS in
#: feredge/commands/export.py); int8 is the CPU flavour: the TensorRT Q/DQ file is built per GPU, not shipped.
ONNX_SUFFIX = {"fp32": ".onnx", "fp16": ".fp16.onnx", "int8": ".int8-cpu.onnx"}
#: Shipped models whose CPU INT8 file is their CPU default: it lost at most 0.1 points against fp32 on FER2013
#: PublicTest and on the real photos' tune half (top-1 and mean-class; README, "Export and INT8", 2026-12-07).
#: feredge-s is not: 0.24 points of mean-class lost on the tune half.
CPU_INT8_DEFAULT: frozenset[str] = frozenset({"feredge-n"})


def shipped_names() -> list[str]:
    """Models whose trained files ship with this install (each with its model card)."""
    return sorted(p.name[:-len(".card.json")] for p in WEIGHTS_DIR.glob("*.card.json"))


def shipped_precisions(name: str) -> list[str]:
    """The precisions of model ``name``'s shipped ONNX files (a model may ship one only)."""
    return [p for p, suffix in ONNX_SUFFIX.items() if (WEIGHTS_DIR / f"{name}{suffix}").is_file()]


def shipped(name: str, kind: str = "onnx", precision: str = "fp32") -> Path:
    """The shipped ONNX (runtime, at ``precision``) or checkpoint (torch) of model ``name``."""
    suffix = ONNX_SUFFIX[precision] if kind == "onnx" else _SUFFIX[kind]
    path = WEIGHTS_DIR / f"{name}{suffix}"
    if not path.is_file():
        have = ", ".join(shipped_names()) or "none"
        trained = (WEIGHTS_DIR / f"{name}{_SUFFIX['checkpoint']}").is_file()
        if kind == "onnx" and shipped_precisions(name):
            how = ("export one with `feredge export --model NAME` and pass its path" if trained else
                   "it ships without its checkpoint, so no other precision can be made from it")
            raise FeredgeError(f"{name}: no shipped {precision} file (shipped precisions: "
                               f"{', '.join(shipped_precisions(name))}); {how}")
        if name in shipped_names():
            raise FeredgeError(f"{name}: ships as its ONNX only ({', '.join(shipped_precisions(name))}), without a "
                               f"checkpoint; what needs one (torch, export, explain) needs another model")
        raise FeredgeError(f"{name}: no shipped {kind} of that name (shipped models: {have}); pass a file path instead")
    return path


def resolve(model: str | Path | None, kind: str = "onnx", precision: str = "fp32") -> Path:
    """A --model value: an existing file as given, a shipped model's name, or (None) the default model.

    ``precision`` picks among a shipped model's ONNX files (fp32, fp16, int8: its CPU INT8 file; the runtime
    turns auto into one of them for the device: `feredge.runtime.loader.pick_precision`). A file path is
    used as given, since its description names its precision: asking a path for fp16 or int8 is refused
    rather than silently ignored."""
    if precision not in ONNX_SUFFIX:
        raise FeredgeError(f"precision {precision!r}: expected one of {', '.join(ONNX_SUFFIX)} (auto is chosen "
                           "where the model runs: feredge.runtime.loader.model_path)")
    if kind != "onnx" and precision != "fp32":
        raise FeredgeError(f"precision {precision}: only ONNX files come in precisions; a {kind} is fp32")
    if model is not None:
        path = Path(model)
        if path.exists() or path.suffix:
            if precision != "fp32":
                raise FeredgeError(f"{path}: precision {precision} picks among a shipped model's files; a file is "
                                   f"used as given (pass the {precision} file itself, e.g. <name>"
                                   f"{ONNX_SUFFIX[precision]})")
            return path
    return shipped(DEFAULT_MODEL if model is None else str(model), kind, precision)


def default_checkpoint() -> Path:
    """Path of the shipped default checkpoint (used when no model is named)."""
    return shipped(DEFAULT_MODEL, "checkpoint")


def shipped_rows() -> list[dict]:
    """`feredge models` rows of the shipped models — what each is for, its size, speed and held-out figures —
    from their descriptions, cards and the catalogue: no torch needed."""
    import json

    from feredge.artifact import read

    catalogue = json.loads((WEIGHTS_DIR / "catalogue.json").read_text())
    rows = []
    for name in shipped_names():
        precision = "fp32" if "fp32" in shipped_precisions(name) else shipped_precisions(name)[0]
        path = shipped(name, "onnx", precision)
        info, card, entry = read(path), json.loads((WEIGHTS_DIR / f"{name}.card.json").read_text()), catalogue[name]
        s = info.input_spec
        rows.append({"name": name, "architecture": info.model, "for": entry["for"],
                     "input": f"{s.channels}x{s.size}x{s.size}", "params": int(card["params"]),
                     "gflops": float(card["gflops_macs"]), "heads": {"emotion": len(info.classes)},
                     "precisions": shipped_precisions(name), "file_mb": round(path.stat().st_size / 1e6, 2),
                     "cpu_ms_per_face": entry["cpu_ms_per_face"],
                     "publictest_top1": card["publictest_single_pass_accuracy"],
                     "real_photos_check_top1": entry["real_photos_check_top1"], "sources": entry["sources"],
                     "description": "shipped, trained", "shipped": True})
    return rows
