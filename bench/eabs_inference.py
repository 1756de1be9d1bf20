"""ABS-like inference: one batched decoder call per step (all samples x classes) vs a loop
over classes and samples, as a naive implementation would write it.

Both run the same exact inference (best of N prototypes, then Adam refinement) with the
shipped `eabs-digits` checkpoint, and their per-class losses are checked to agree.
Prints images per second of each and the ratio batched / looped.
Run: .venv/bin/python bench/eabs_inference.py [--samples 100] [--looped-samples 5] [--steps 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from advbench.data import load_dataset
from advbench.defenses.latent_inference import looped_exact_inference
from advbench.defense_loading import resolve_defense


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100, help="images for the batched inference")
    parser.add_argument("--looped-samples", type=int, default=5, help="images for the (slow) looped inference")
    parser.add_argument("--steps", type=int, default=20, help="refinement steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    data = load_dataset("digits")
    model = resolve_defense("eabs:exact", data).to(device)
    model.inference.settings.steps = args.steps
    settings = model.inference.settings
    x = data.test_x[: args.samples].to(device)

    model.inference.exact(x[:2])  # warm-up, and the prototype images cached as in a real run
    start = time.perf_counter()
    batched = model.inference.exact(x).loss.cpu()  # (the copy waits for a GPU to finish)
    batched_rate = len(x) / (time.perf_counter() - start)

    cpu = model.to("cpu")
    decoders = [cpu.decoders.single(k) for k in range(model.num_classes)]
    small = x[: args.looped_samples].cpu()
    start = time.perf_counter()
    looped = looped_exact_inference(decoders, cpu.inference.prototypes, small, cpu.point_cost,
                                    beta=model.config.beta, settings=settings)
    looped_rate = len(small) / (time.perf_counter() - start)
    agree = torch.allclose(batched[: len(small)], looped, rtol=1e-3, atol=1e-3)

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, device {device} (the looped reference runs on the cpu)")
    print(f"exact inference, {model.num_classes} classes, {settings.prototypes} prototypes, {settings.steps} steps")
    print(f"batched: {batched_rate:.1f} images/s ({len(x)} images)")
    print(f"looped:  {looped_rate:.2f} images/s ({len(small)} images)")
    print(f"batched / looped images per second: {batched_rate / looped_rate:.1f}x; losses agree: {agree}")


if __name__ == "__main__":
    main()
