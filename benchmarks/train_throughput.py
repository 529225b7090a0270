"""Training throughput (images/s) per registered model on the current device.

Runs forward + backward + optimiser step on random inputs at each model's input size, after
warm-up, as the trainer runs them: AMP on CUDA, channels-last everywhere (``--nchw`` to compare without).

    python benchmarks/train_throughput.py [--models feredge-s vgg-a] [--batch 64] [--steps 10] [--nchw]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from feredge.models import create_model, list_models, model_info


def throughput(name: str, batch: int, steps: int, device: torch.device, channels_last: bool = True) -> float:
    spec = model_info(name).input_spec
    model = create_model(name).to(device)
    cuda = device.type == "cuda"
    x = torch.randn(batch, spec.channels, spec.size, spec.size, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    y = torch.randint(0, 7, (batch,), device=device)
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=cuda):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--nchw", action="store_true", help="contiguous NCHW instead of channels-last")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    rows = [{"model": n, "images_per_s": throughput(n, args.batch, args.steps, device, not args.nchw),
             "batch": args.batch, "layout": "nchw" if args.nchw else "channels_last"}
            for n in (args.models or list_models())]
    if args.json:
        print(json.dumps({"device": where, "rows": rows}, indent=2))
        return
    print(f"training throughput on {where}, batch {args.batch}, {rows[0]['layout']}")
    for r in rows:
        print(f"  {r['model']:<16} {r['images_per_s']:10.1f} img/s")


if __name__ == "__main__":
    main()
