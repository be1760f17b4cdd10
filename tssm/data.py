"""Datasets as whole in-memory tensors, preprocessed the way the paper does it.

The paper feeds raw pixels scaled to [0, 1] and, to keep the fully connected networks
small, downsamples every image by 2 with average pooling: MNIST-like sets become 14x14
(196 features) and CIFAR becomes 16x16x3 (768 features). The ADMM/AM solvers work on
full batches, so a dataset is just four tensors (no DataLoader, no per-item PIL loop).

``digits`` (scikit-learn's bundled 8x8 digits) is always available offline and is never
downsampled. The torchvision sets are read from torchvision's own on-disk layout under
``root``; Fashion-MNIST can also come from Debian's ``dataset-fashion-mnist`` package.
When a set is missing and cannot be downloaded, :class:`DataUnavailableError` says where
it looked and how to get the files.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import pickle
import shutil
import socket
import tempfile
import zlib
import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tssm.errors import ConfigError, DataUnavailableError

__all__ = ["DATASETS", "Dataset", "load_dataset"]

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100")

#: Where Debian's ``dataset-fashion-mnist`` package puts the gzipped idx files.
FASHION_MNIST_ENV = "TSSM_FASHION_MNIST_DIR"
DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

_NUM_CLASSES = {
    "digits": 10,
    "mnist": 10,
    "fashion_mnist": 10,
    "kmnist": 10,
    "cifar10": 10,
    "cifar100": 100,
}
#: Training and test rows of each dataset as its loader returns them (a test checks they agree);
#: the pipeline's grid refuses an ``n_train`` larger than these before anything trains.
ROWS: dict[str, tuple[int, int]] = {
    "digits": (1437, 360), "mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "kmnist": (60000, 10000),
    "cifar10": (50000, 10000), "cifar100": (50000, 10000),
}
_IMAGE_SIZE = {"mnist": 28, "fashion_mnist": 28, "kmnist": 28, "cifar10": 32, "cifar100": 32}
_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_DOWNLOAD_TIMEOUT_S = 60.0
_POOL_CHUNK = 10_000  # images per pooling step, bounds the float32 peak for CIFAR


@dataclass
class Dataset:
    """A train/test split held as tensors.

    ``x_*`` are float32 ``[M, C, H, W]`` with pixels in [0, 1]; ``y_*`` are int64 ``[M]``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    x_val: torch.Tensor | None = None  # rows held out of the training set (see with_validation)
    y_val: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of one example."""
        return tuple(self.x_train.shape[1:])

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> "Dataset":
        """A copy with every tensor on ``device`` and the inputs in ``dtype`` (None: as they
        are); tensors already there are shared."""
        def x(t):
            return None if t is None else t.to(device, dtype)

        def y(t):
            return None if t is None else t.to(device)

        return Dataset(name=self.name, x_train=x(self.x_train), y_train=y(self.y_train), x_test=x(self.x_test),
                       y_test=y(self.y_test), num_classes=self.num_classes, x_val=x(self.x_val), y_val=y(self.y_val))

    def with_validation(self, fraction: float) -> "Dataset":
        """Hold out ``round(fraction * M)`` training rows as the validation split: rows drawn
        by a fixed generator (seed 0), so every method and every run seed sees the same split
        and settings can be selected on it without touching the test set. The remaining
        training rows keep their order."""
        if fraction <= 0:
            return self
        m = len(self.y_train)
        k = round(fraction * m)
        if not 0 < k < m:
            raise ConfigError(f"val_fraction={fraction} of {m} training rows holds out {k}: choose a share that "
                              f"leaves rows on both sides")
        held = torch.randperm(m, generator=torch.Generator().manual_seed(0))[:k].sort().values
        keep = torch.ones(m, dtype=torch.bool)
        keep[held] = False
        held = held.to(self.x_train.device)
        keep = keep.to(self.x_train.device)
        return dataclasses.replace(self, x_train=self.x_train[keep], y_train=self.y_train[keep],
                                   x_val=self.x_train[held], y_val=self.y_train[held])

    def subset(self, n_train: int | None, n_test: int | None) -> "Dataset":
        """The first ``n_train`` training and ``n_test`` test rows (``None`` keeps all).

        The rows are views of this dataset's tensors. Asking for more rows than exist is a
        :class:`ConfigError`, so that a quick run never silently reports a different size.
        """
        n_tr = _check_count("n_train", n_train, len(self.y_train), self.name)
        n_te = _check_count("n_test", n_test, len(self.y_test), self.name)
        return Dataset(
            name=self.name,
            x_train=self.x_train[:n_tr],
            y_train=self.y_train[:n_tr],
            x_test=self.x_test[:n_te],
            y_test=self.y_test[:n_te],
            num_classes=self.num_classes,
        )


def check_rows(name: str, n_train: int | None, n_test: int | None) -> None:
    """Refuse ``n_train``/``n_test`` beyond the rows of dataset ``name`` (:data:`ROWS`), as
    :meth:`Dataset.subset` does once the data is loaded."""
    train, test = ROWS[_canonical_name(name)]
    _check_count("n_train", n_train, train, name)
    _check_count("n_test", n_test, test, name)


def _check_count(what: str, n: int | None, available: int, name: str) -> int:
    if n is None:
        return available
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"{what} must be a non-negative integer or None, got {n!r}")
    if n > available:
        raise ConfigError(
            f"{what}={n} but dataset {name!r} has only {available} rows in that split; "
            f"use {available} or fewer (or None for all)"
        )
    return int(n)


def load_dataset(
    name: str,
    root: str | os.PathLike = "data",
    *,
    download: bool = True,
    downsample: int = 2,
    device: str | torch.device = "cpu",
) -> Dataset:
    """Load a dataset as tensors: pixels in [0, 1], average-pooled by ``downsample``.

    ``name`` is one of :data:`DATASETS`. ``root`` is torchvision's dataset root
    (``<root>/MNIST/raw/...``, ``<root>/cifar-10-batches-py/...``). With ``download=True``
    a missing torchvision set is downloaded once; without network access, or with
    ``download=False``, a missing set raises :class:`DataUnavailableError`.
    ``downsample`` is the pooling kernel and stride (1 = full resolution); it is ignored
    for ``digits``, which is already 8x8.
    """
    key = _canonical_name(name)
    factor = _check_downsample(key, downsample)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"unknown device {device!r}: {e}") from e

    if key == "digits":
        ds = _load_digits()
    else:
        ds = _load_torchvision(key, Path(os.path.expanduser(os.fspath(root))), bool(download), factor)
    return ds.to(dev)


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return key


def _check_downsample(key: str, downsample: int) -> int:
    if isinstance(downsample, bool) or not isinstance(downsample, (int, np.integer)) or downsample < 1:
        raise ConfigError(f"downsample must be a positive integer, got {downsample!r}")
    size = _IMAGE_SIZE.get(key)
    if size is not None and size % downsample != 0:
        divisors = [d for d in range(1, size + 1) if size % d == 0]
        raise ConfigError(
            f"downsample={downsample} does not divide the {size}x{size} images of {key!r}; "
            f"use one of {divisors}"
        )
    return int(downsample)


# --------------------------------------------------------------------------- digits


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return Dataset(
        name="digits",
        x_train=torch.from_numpy(np.ascontiguousarray(x_tr)),
        y_train=torch.from_numpy(np.ascontiguousarray(y_tr)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_te)),
        y_test=torch.from_numpy(np.ascontiguousarray(y_te)),
        num_classes=10,
    )


# ---------------------------------------------------------------------- torchvision


@lru_cache(maxsize=None)
def _classes(key: str):
    from torchvision import datasets as tvd

    # torchvision's CIFAR classes check the md5 of every batch file, on each load, which
    # also rejects anything but the exact official files (e.g. tiny test fixtures). When
    # loading files that are already on disk we only check that they exist; a truncated
    # or corrupt file still fails while unpickling and is reported as such. Downloads
    # keep the stock classes, so what is downloaded is md5-checked.
    # The MNIST family needs no such subclass: torchvision 0.29 only checks that the
    # extracted raw files exist (md5 is only checked for the downloaded .gz).
    class _CIFAR10Files(tvd.CIFAR10):
        def _check_integrity(self) -> bool:
            return not _missing_cifar(type(self), self.root)

        def _load_meta(self) -> None:
            path = os.path.join(self.root, self.base_folder, self.meta["filename"])
            with open(path, "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    class _CIFAR100Files(_CIFAR10Files):
        base_folder = tvd.CIFAR100.base_folder
        train_list = tvd.CIFAR100.train_list
        test_list = tvd.CIFAR100.test_list
        meta = tvd.CIFAR100.meta

    return {
        "mnist": (tvd.MNIST, tvd.MNIST),
        "fashion_mnist": (tvd.FashionMNIST, tvd.FashionMNIST),
        "kmnist": (tvd.KMNIST, tvd.KMNIST),
        "cifar10": (_CIFAR10Files, tvd.CIFAR10),
        "cifar100": (_CIFAR100Files, tvd.CIFAR100),
    }[key]


def _missing_cifar(cls, root) -> list[str]:
    folder = os.path.join(os.fspath(root), cls.base_folder)
    names = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [n for n in names if not os.path.isfile(os.path.join(folder, n))]


def _data_dir(key: str, cls, root: Path) -> Path:
    if key.startswith("cifar"):
        return root / cls.base_folder
    return root / cls.__name__ / "raw"


def _missing(key: str, cls, root: Path) -> list[str]:
    if key.startswith("cifar"):
        return _missing_cifar(cls, root)
    processed = root / cls.__name__ / "processed"
    if all((processed / f).is_file() for f in (cls.training_file, cls.test_file)):
        return []  # torchvision's legacy cache, still readable by torchvision
    raw = _data_dir(key, cls, root)
    return [f for f in _MNIST_FILES if not (raw / f).is_file()]


def _fashion_mnist_dir() -> Path:
    return Path(os.environ.get(FASHION_MNIST_ENV) or DEFAULT_FASHION_MNIST_DIR)


def _install_debian_fashion_mnist(raw: Path) -> bool:
    """Decompress Debian's Fashion-MNIST .gz files into torchvision's raw folder.

    Debian recompressed the files, so torchvision's md5 list for the .gz files does not
    match them; the decompressed idx files are the same. Returns False when they are
    not all there.
    """
    src = _fashion_mnist_dir()
    sources = [src / f"{f}.gz" for f in _MNIST_FILES]
    if not all(p.is_file() for p in sources):
        return False
    raw.mkdir(parents=True, exist_ok=True)
    for gz, name in zip(sources, _MNIST_FILES):
        dest = raw / name
        if dest.is_file():
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=raw)
        try:
            with os.fdopen(fd, "wb") as out, gzip.open(gz, "rb") as inp:
                shutil.copyfileobj(inp, out, 1 << 20)
            os.replace(tmp, dest)
        except (EOFError, OSError, zlib.error) as e:  # truncated or not gzip (gzip.BadGzipFile is an OSError)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise DataUnavailableError(
                f"dataset 'fashion_mnist': {gz} is truncated or corrupt ({type(e).__name__}: {_one_line(e)}); "
                f"reinstall it (`apt-get install --reinstall dataset-fashion-mnist`)") from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return True


@contextlib.contextmanager
def _quiet_network(timeout: float):
    """Silence torchvision's prints and progress bars and bound every socket wait."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        socket.setdefaulttimeout(old)


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or "no detail"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _how_to_fix(key: str, cls, root: Path) -> str:
    rel = cls.base_folder if key.startswith("cifar") else cls.__name__
    lines = [
        "run once on a machine with internet:",
        f"  python -c 'import torchvision; torchvision.datasets.{cls.__name__}(\"data\", download=True)'",
        f"and copy data/{rel} to {root / rel}",
    ]
    if key == "fashion_mnist":
        lines.append(
            f"or `apt-get install dataset-fashion-mnist` (files in {DEFAULT_FASHION_MNIST_DIR}, "
            f"or point ${FASHION_MNIST_ENV} at a folder holding the four .gz files)"
        )
    return "\n".join(lines)


def _load_torchvision(key: str, root: Path, download: bool, factor: int) -> Dataset:
    local_cls, download_cls = _classes(key)
    folder = _data_dir(key, local_cls, root)
    missing = _missing(key, local_cls, root)

    if missing and key == "fashion_mnist" and _install_debian_fashion_mnist(folder):
        missing = _missing(key, local_cls, root)

    if missing:
        where = f"looked in {folder} (missing: {', '.join(missing)})"
        if key == "fashion_mnist":
            where += f" and in {_fashion_mnist_dir()}"
        if not download:
            raise DataUnavailableError(
                f"dataset {key!r} is not on disk and download=False; {where}.\n"
                + _how_to_fix(key, download_cls, root)
            )
        try:
            root.mkdir(parents=True, exist_ok=True)
            with _quiet_network(_DOWNLOAD_TIMEOUT_S):
                download_cls(os.fspath(root), train=True, download=True)
        except Exception as e:  # no network, a mirror down, a bad checksum, ...
            raise DataUnavailableError(
                f"dataset {key!r} is not on disk and downloading it failed "
                f"({type(e).__name__}: {_one_line(e)}); "
                f"{where}.\n" + _how_to_fix(key, download_cls, root)
            ) from e

    try:
        train = local_cls(os.fspath(root), train=True, download=False)
        test = local_cls(os.fspath(root), train=False, download=False)
    except Exception as e:
        # torchvision's reader only asserts the IDX header: say what that means, not "AssertionError"
        detail = (f"{type(e).__name__}: {_one_line(e)}" if str(e).strip() and not isinstance(e, AssertionError)
                  else "unexpected file format: bad magic number or size")
        raise DataUnavailableError(
            f"dataset {key!r}: the files in {folder} could not be read ({detail}); "
            f"they are probably truncated or corrupt: delete {folder} and get them again.\n"
            + _how_to_fix(key, download_cls, root)
        ) from e

    x_train, y_train = _to_tensors(key, train, factor)
    x_test, y_test = _to_tensors(key, test, factor)
    return Dataset(key, x_train, y_train, x_test, y_test, _NUM_CLASSES[key])


def _to_tensors(key: str, tv_dataset, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    if key.startswith("cifar"):
        # numpy uint8 [N, 32, 32, 3] -> [N, 3, 32, 32]
        images = torch.from_numpy(np.asarray(tv_dataset.data, dtype=np.uint8)).permute(0, 3, 1, 2)
    else:
        images = torch.as_tensor(tv_dataset.data, dtype=torch.uint8).unsqueeze(1)  # [N, 1, 28, 28]
    labels = torch.as_tensor(np.asarray(tv_dataset.targets), dtype=torch.int64).reshape(-1)
    if len(labels) != len(images):
        raise DataUnavailableError(
            f"dataset {key!r}: {len(images)} images but {len(labels)} labels; the files are inconsistent"
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= _NUM_CLASSES[key]):
        raise DataUnavailableError(
            f"dataset {key!r}: labels from {int(labels.min())} to {int(labels.max())}, but it has "
            f"{_NUM_CLASSES[key]} classes (0..{_NUM_CLASSES[key] - 1}); the label file is corrupt"
        )
    return _unit_and_pool(images, factor), labels


def _unit_and_pool(images: torch.Tensor, factor: int) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` -> float32 in [0, 1], average-pooled by ``factor``."""
    n, c, h, w = images.shape
    out = torch.empty((n, c, h // factor, w // factor), dtype=torch.float32)
    for start in range(0, n, _POOL_CHUNK):
        chunk = images[start : start + _POOL_CHUNK].to(torch.float32).div_(255.0)
        if factor > 1:
            chunk = F.avg_pool2d(chunk, kernel_size=factor, stride=factor)
        out[start : start + _POOL_CHUNK] = chunk
    return out
