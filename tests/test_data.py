"""Datasets: digits, and the real torchvision loading path on small files written in their formats."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import torch

from advbench.data import load_dataset
from advbench.errors import AdvbenchError


def test_digits_shape_range_and_fixed_split(digits):
    assert digits.info.input_shape == (1, 8, 8) and digits.info.num_classes == 10
    assert digits.train_x.min() >= 0 and digits.train_x.max() <= 1
    assert len(digits.train_y) + len(digits.test_y) == 1797
    again = load_dataset("digits")
    assert torch.equal(again.test_x, digits.test_x)


def test_test_subset_is_seeded_and_sorted(digits):
    a, _, _ = digits.test_subset(50, seed=1)
    b, _, _ = digits.test_subset(50, seed=1)
    c, _, _ = digits.test_subset(50, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, a.sort().values)


def _write_idx(path, array: np.ndarray) -> None:
    dtype_code = 0x08
    header = struct.pack(">HBB", 0, dtype_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_idx_datasets_load_through_torchvision(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,)))
    data = load_dataset(name, tmp_path)
    assert data.info.input_shape == (1, 28, 28)
    assert data.train_x.shape == (12, 1, 28, 28) and data.test_x.shape == (5, 1, 28, 28)
    assert 0 <= data.train_x.min() and data.train_x.max() <= 1


def test_cifar10_loads_through_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: __import__("os").path.exists(path))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, 4))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    data = load_dataset("cifar10", tmp_path)
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (4, 3, 32, 32)


def test_svhn_loads_through_torchvision(tmp_path, monkeypatch):
    import scipy.io
    import torchvision.datasets.svhn as svhn

    monkeypatch.setattr(svhn, "check_integrity", lambda path, md5=None: __import__("os").path.exists(path))
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat",
                         {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8), "y": rng.integers(1, 11, (n, 1))})
    data = load_dataset("svhn", tmp_path)
    assert data.train_x.shape == (6, 3, 32, 32) and data.train_y.max() <= 9


def test_gtsrb_loads_and_resizes(tmp_path):
    from PIL import Image

    base = tmp_path / "gtsrb"
    for cls in ("00000", "00001"):
        folder = base / "GTSRB" / "Training" / cls
        folder.mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40 + i, 35), color=(10 * i, 100, 200)).save(folder / f"{i}.ppm")
    test_dir = base / "GTSRB" / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    Image.new("RGB", (30, 30)).save(test_dir / "00000.ppm")
    (base / "GT-final_test.csv").write_text("Filename;Width;Height;ClassId\n00000.ppm;30;30;1\n")
    data = load_dataset("gtsrb", tmp_path)
    assert data.train_x.shape == (4, 3, 32, 32) and data.test_x.shape == (1, 3, 32, 32)
    assert data.info.num_classes == 43


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "svhn", "gtsrb"])
def test_missing_dataset_says_where_files_go(tmp_path, name):
    with pytest.raises(AdvbenchError, match=r"not found in .*--download"):
        load_dataset(name, tmp_path)


def test_the_shipped_digits_are_scikit_learns_split_exactly(digits):
    """advbench reads its own copy (no scikit-learn import); it must be the split it always used."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    train_x, test_x, train_y, test_y = train_test_split(images, bunch.target, test_size=0.2, random_state=0,
                                                        stratify=bunch.target)
    assert np.array_equal(digits.train_x.numpy(), train_x) and np.array_equal(digits.test_x.numpy(), test_x)
    assert np.array_equal(digits.train_y.numpy(), train_y) and np.array_equal(digits.test_y.numpy(), test_y)
    assert digits.train_y.dtype == torch.long
    # the same strides too: torch picks its kernels by them, and other strides changed input
    # gradients in the last bits (records of 2eb88b9..HEAD differed from f4f9ad6's in grad_norm)
    assert digits.test_x.stride() == torch.from_numpy(test_x).stride()
    assert digits.train_x.stride() == torch.from_numpy(train_x).stride()


def test_reading_the_digits_imports_no_scikit_learn():
    import subprocess
    import sys

    code = "import sys; from advbench.data import load_dataset; load_dataset('digits'); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
