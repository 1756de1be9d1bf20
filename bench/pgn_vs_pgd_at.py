"""Training cost: PGN adversarial training vs PGD adversarial training (10 steps), seconds per epoch.

Paper 003 Table 2 reports 52 vs 175 s/epoch on CIFAR; here both train on the same data and
architecture in one run. Prints each and the ratio pgn / pgd-at (expected below 1).
Run: .venv/bin/python bench/pgn_vs_pgd_at.py [--epochs 3] [--dataset digits] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import tempfile

import torch

from advbench import zoo
from advbench.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    data = load_dataset(args.dataset)
    print(f"machine: {platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {device}, dataset {args.dataset} ({len(data.train_y)} training images), {args.epochs} epochs each")
    with tempfile.TemporaryDirectory() as directory:
        pgd = zoo.train("pgd-at", data, options={"epochs": args.epochs, "steps": 10}, zoo_dir=directory,
                        device=device)
        pgn = zoo.train("pgn", data, options={"epochs": args.epochs}, zoo_dir=directory, device=device)
    print(f"pgd-at (10 steps): {pgd.seconds_per_epoch:.3f} s/epoch")
    print(f"pgn:               {pgn.seconds_per_epoch:.3f} s/epoch")
    print(f"ratio pgn / pgd-at: {pgn.seconds_per_epoch / pgd.seconds_per_epoch:.3f}")


if __name__ == "__main__":
    main()
