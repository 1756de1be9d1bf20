"""Datasets as in-memory tensors on the [0,1] scale.

`digits` (scikit-learn's 8x8 handwritten digits, shipped with advbench) needs no network and is
the default. The others load through torchvision from a data directory; a missing
dataset stops with a message saying where the files go or to pass --download.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .errors import AdvbenchError
from .registry import datasets, register_dataset
from .settings import DEFAULT_DATASET  # noqa: F401 - importers of the datasets read the default here


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its inputs, stored in zoo cards."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    bounds: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class Dataset:
    info: DataInfo
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def test_subset(self, samples: int | None, seed: int, first: bool = False,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A fixed subset of the test set: (indices, inputs, labels); the first `samples`
        points with `first` (RobustBench's convention), else a seeded random subset.

        The same seed always gives the same samples, so runs and defenses are paired
        sample by sample (McNemar tests need that).
        """
        n = len(self.test_y)
        order = (torch.arange(n) if first
                 else torch.randperm(n, generator=torch.Generator().manual_seed(seed)))
        if samples is not None:
            order = order[: min(samples, n)]
        order, _ = order.sort()
        return order, self.test_x[order], self.test_y[order]


def default_data_dir() -> Path:
    if "ADVBENCH_DATA" in os.environ:
        return Path(os.environ["ADVBENCH_DATA"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "advbench" / "data"


def load_dataset(name: str, data_dir: Path | None = None, download: bool = False) -> Dataset:
    loader: Callable[[Path, bool], Dataset] = datasets.get(name)
    return loader(Path(data_dir) if data_dir else default_data_dir(), download)


@register_dataset("digits", description="the 8x8 handwritten digits bundled with advbench (scikit-learn's; 1x8x8, "
                                        "10 classes); no download")
def load_digits(data_dir: Path, download: bool) -> Dataset:
    """scikit-learn's 1797 digits, split 80/20 stratified with seed 0, shipped as they are split
    (`digits.npz`, grey levels 0-16): reading them needs no scikit-learn import (seconds per command)."""
    with np.load(str(resources.files("advbench") / "digits.npz")) as stored:
        arrays = {name: stored[name] for name in ("train_x", "train_y", "test_x", "test_y")}

    def images(levels: np.ndarray) -> torch.Tensor:
        # copied by a fancy index, as scikit-learn's split made them: the same strides, so the same
        # kernels and the same gradients to the last bit as runs that read scikit-learn's arrays
        scaled = (levels.astype(np.float64) / 16.0).astype(np.float32)[:, None]
        return torch.from_numpy(scaled[np.arange(len(scaled))])

    return Dataset(
        DataInfo("digits", (1, 8, 8), 10),
        images(arrays["train_x"]), torch.from_numpy(arrays["train_y"].astype(np.int64)),
        images(arrays["test_x"]), torch.from_numpy(arrays["test_y"].astype(np.int64)),
    )


def _missing(name: str, data_dir: Path, where: str) -> AdvbenchError:
    return AdvbenchError(
        f"dataset {name} not found in {data_dir} (expected {where}); "
        f"pass --download to fetch it or --data-dir to point at it"
    )


def _to_tensor(array: np.ndarray | torch.Tensor, layout: str) -> torch.Tensor:
    """uint8 images in NHW, NHWC or NCHW layout -> float NCHW in [0,1]."""
    t = torch.as_tensor(np.asarray(array))
    if layout == "NHW":
        t = t[:, None]
    elif layout == "NHWC":
        t = t.permute(0, 3, 1, 2)
    return t.float().div_(255.0).contiguous()


def _torchvision_pair(name: str, data_dir: Path, download: bool, where: str, make: Callable, layout: str, num_classes: int) -> Dataset:
    try:
        train, test = make(True, download), make(False, download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        if download:
            raise AdvbenchError(f"dataset {name}: download into {data_dir} failed: {exc}") from None
        raise _missing(name, data_dir, where) from None
    except OSError as exc:
        raise AdvbenchError(f"dataset {name}: cannot read {data_dir}: {exc}") from None
    train_x, train_y = train
    test_x, test_y = test
    train_x, test_x = _to_tensor(train_x, layout), _to_tensor(test_x, layout)
    info = DataInfo(name, tuple(train_x.shape[1:]), num_classes)
    return Dataset(info, train_x, torch.as_tensor(np.asarray(train_y)).long(), test_x, torch.as_tensor(np.asarray(test_y)).long())


def _register_idx_dataset(name: str, cls_name: str, folder: str, description: str) -> None:
    def load(data_dir: Path, download: bool) -> Dataset:
        import torchvision.datasets as tvd

        def make(train: bool, dl: bool):
            ds = getattr(tvd, cls_name)(str(data_dir), train=train, download=dl)
            return ds.data, ds.targets

        return _torchvision_pair(name, data_dir, download, f"{data_dir}/{folder}/raw/*-idx?-ubyte", make, "NHW", 10)

    load.__doc__ = description
    register_dataset(name, description=description)(load)


_register_idx_dataset("mnist", "MNIST", "MNIST", "MNIST handwritten digits (1x28x28, 10 classes) via torchvision")
_register_idx_dataset("fashion-mnist", "FashionMNIST", "FashionMNIST", "Fashion-MNIST clothing (1x28x28, 10 classes) via torchvision")


@register_dataset("cifar10", description="CIFAR-10 natural images (3x32x32, 10 classes) via torchvision")
def load_cifar10(data_dir: Path, download: bool) -> Dataset:
    import torchvision.datasets as tvd

    def make(train: bool, dl: bool):
        ds = tvd.CIFAR10(str(data_dir), train=train, download=dl)
        return ds.data, ds.targets

    return _torchvision_pair("cifar10", data_dir, download, f"{data_dir}/cifar-10-batches-py/", make, "NHWC", 10)


@register_dataset("svhn", description="SVHN street-view house numbers (3x32x32, 10 classes) via torchvision")
def load_svhn(data_dir: Path, download: bool) -> Dataset:
    import torchvision.datasets as tvd

    def make(train: bool, dl: bool):
        ds = tvd.SVHN(str(data_dir), split="train" if train else "test", download=dl)
        return ds.data, ds.labels

    return _torchvision_pair("svhn", data_dir, download, f"{data_dir}/train_32x32.mat and test_32x32.mat", make, "NCHW", 10)


@register_dataset("gtsrb", description="German traffic signs resized to 3x32x32, 43 classes, via torchvision")
def load_gtsrb(data_dir: Path, download: bool) -> Dataset:
    import torchvision.datasets as tvd
    import torchvision.transforms as T

    resize = T.Compose([T.Resize((32, 32)), T.PILToTensor()])

    def make(train: bool, dl: bool):
        ds = tvd.GTSRB(str(data_dir), split="train" if train else "test", download=dl, transform=resize)
        images, labels = zip(*(ds[i] for i in range(len(ds)))) if len(ds) else ((), ())
        return torch.stack(images) if images else torch.zeros(0, 3, 32, 32, dtype=torch.uint8), list(labels)

    return _torchvision_pair("gtsrb", data_dir, download, f"{data_dir}/gtsrb/GTSRB/", make, "NCHW", 43)
