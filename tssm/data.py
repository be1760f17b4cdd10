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

Files are verified before they are trusted (docs/reliability.md): every file's structure
(idx headers, shapes, row counts of images and labels, label range) always; and, by default,
that they are the official set: torchvision's md5 of every CIFAR file, checked *before* it is
unpickled (and then read by an unpickler that admits numpy arrays and plain data only), the
sha256 of Fashion-MNIST's decompressed files, the official row counts and every class present.
``data_identity`` names the files' content for the run identity (tssm.config).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import pickle
import struct
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



@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset's official files hold; every load is checked against it."""

    classes: int
    channels: int
    size: int  # side of the square images, before downsampling
    train_rows: int  # rows of the official training and test sets
    test_rows: int


SPECS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(10, 1, 8, 1437, 360),  # scikit-learn's 1,797 images, split 80/20 by the loader
    "mnist": DatasetSpec(10, 1, 28, 60_000, 10_000),
    "fashion_mnist": DatasetSpec(10, 1, 28, 60_000, 10_000),
    "kmnist": DatasetSpec(10, 1, 28, 60_000, 10_000),
    "cifar10": DatasetSpec(10, 3, 32, 50_000, 10_000),
    "cifar100": DatasetSpec(100, 3, 32, 50_000, 10_000),
}
_NUM_CLASSES = {k: v.classes for k, v in SPECS.items()}
_IMAGE_SIZE = {k: v.size for k, v in SPECS.items() if k != "digits"}

#: sha256 of the decompressed idx files where their content is known: Zalando's Fashion-MNIST
#: release, as Debian's ``dataset-fashion-mnist`` ships it (torchvision lists only the md5 of
#: its own .gz files, which Debian recompressed).
IDX_SHA256: dict[str, dict[str, str]] = {
    "fashion_mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
#: Training and test rows of each dataset as its loader returns them (a test checks they agree);
#: the pipeline's grid refuses an ``n_train`` larger than these before anything trains.
ROWS: dict[str, tuple[int, int]] = {k: (v.train_rows, v.test_rows) for k, v in SPECS.items()}
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
    identity: str = "unknown"  # the files' content (data_identity), recorded and hashed with the config
    verified: str = "none"  # what was checked: "official" (checksums, counts, classes) or "structure"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of one example."""
        return tuple(self.x_train.shape[1:])

    def describe(self) -> dict:
        """What run.json records of the data a run trained on: rows per split, input shape, the
        files' identity and how they were verified."""
        rows = {"train": len(self.y_train), "test": len(self.y_test)}
        if self.y_val is not None:
            rows["val"] = len(self.y_val)
        return {"name": self.name, "rows": rows, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "identity": self.identity, "verified": self.verified}

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> "Dataset":
        """A copy with every tensor on ``device`` and the inputs in ``dtype`` (None: as they
        are); tensors already there are shared."""
        def x(t):
            return None if t is None else t.to(device, dtype)

        def y(t):
            return None if t is None else t.to(device)

        return dataclasses.replace(self, x_train=x(self.x_train), y_train=y(self.y_train), x_test=x(self.x_test),
                                   y_test=y(self.y_test), x_val=x(self.x_val), y_val=y(self.y_val))

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
        return dataclasses.replace(self, x_train=self.x_train[:n_tr], y_train=self.y_train[:n_tr],
                                   x_test=self.x_test[:n_te], y_test=self.y_test[:n_te], x_val=None, y_val=None)


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
    verify: bool = True,
) -> Dataset:
    """Load a dataset as tensors: pixels in [0, 1], average-pooled by ``downsample``.

    ``name`` is one of :data:`DATASETS`. ``root`` is torchvision's dataset root
    (``<root>/MNIST/raw/...``, ``<root>/cifar-10-batches-py/...``). With ``download=True``
    a missing torchvision set is downloaded once; without network access, or with
    ``download=False``, a missing set raises :class:`DataUnavailableError`.
    ``downsample`` is the pooling kernel and stride (1 = full resolution); it is ignored
    for ``digits``, which is already 8x8.

    ``verify`` (the default, and what ``tssm train`` does) also requires the official files:
    checksums where they are published, the official row counts, every class present.
    ``verify=False`` is for small hand-made files (tests); their structure is still checked
    and pickles are still read without running code.
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
        ds = _load_torchvision(key, Path(os.path.expanduser(os.fspath(root))), bool(download), factor, verify)
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
        identity=DIGITS_IDENTITY,
        verified="official",
    )


#: The identity of scikit-learn's bundled digits (the same file in every release).
DIGITS_IDENTITY = "sklearn-digits"


# ---------------------------------------------------------------------- verification


class _BadFile(ValueError):
    """A data file that is not what it should be (the message says how)."""


@lru_cache(maxsize=64)
def _digest_cached(path: str, algorithm: str, size: int, mtime_ns: int, inode: int) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The file's digest, computed once per process while its size and mtime stay the same."""
    st = os.stat(path)
    return _digest_cached(os.fspath(path), algorithm, st.st_size, st.st_mtime_ns, st.st_ino)


def data_identity(name: str, root: str | os.PathLike = "data") -> str:
    """A short name for the content of the files ``load_dataset(name, root)`` reads: the hash of
    their names and checksums (not their path), so a run made on other data is another run.
    Files not on disk yet count as ``missing``."""
    key = _canonical_name(name)
    if key == "digits":
        return DIGITS_IDENTITY
    root = Path(os.path.expanduser(os.fspath(root)))
    files = _source_files(key, root)
    digests = {f.name: (file_digest(f, _ALGORITHM[key.startswith("cifar")]) if f.is_file() else "missing")
               for f in files}
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()[:16]


_ALGORITHM = {True: "md5", False: "sha256"}  # cifar: torchvision's md5 list; idx: sha256


def _source_files(key: str, root: Path) -> list[Path]:
    """The files a load of ``key`` reads."""
    cls = _classes(key)[0]
    if key.startswith("cifar"):
        folder = root / cls.base_folder
        return [folder / f for f, _ in cls.train_list + cls.test_list] + [folder / cls.meta["filename"]]
    raw = root / cls.__name__ / "raw"
    processed = root / cls.__name__ / "processed"
    if not all((raw / f).is_file() for f in _MNIST_FILES) and all(
            (processed / f).is_file() for f in (cls.training_file, cls.test_file)):
        return [processed / cls.training_file, processed / cls.test_file]
    return [raw / f for f in _MNIST_FILES]


def _check_idx(path: Path, images: bool, size: int) -> int:
    """Check an idx file's header against its length and the dataset's shape; its row count."""
    with open(path, "rb") as f:
        head = f.read(16 if images else 8)
    length = os.path.getsize(path)
    magic, want = (2051, "an idx image file") if images else (2049, "an idx label file")
    if len(head) < (16 if images else 8) or struct.unpack(">I", head[:4])[0] != magic:
        raise _BadFile(f"{path.name} is not {want}: bad magic number or size")
    n = struct.unpack(">I", head[4:8])[0]
    if images:
        h, w = struct.unpack(">II", head[8:16])
        if (h, w) != (size, size):
            raise _BadFile(f"{path.name} holds {h}x{w} images, not the dataset's {size}x{size}")
        expected = 16 + n * h * w
    else:
        expected = 8 + n
    if length != expected:
        raise _BadFile(f"{path.name} is {length} bytes but its header promises {expected} "
                       f"({'truncated' if length < expected else 'extra bytes'})")
    return n


def _check_split_labels(key: str, split: str, labels: torch.Tensor, official: bool) -> None:
    classes = SPECS[key].classes
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise _BadFile(f"{split} labels from {int(labels.min())} to {int(labels.max())}, but it has "
                       f"{classes} classes (0..{classes - 1}); the label file is corrupt")
    if official:
        present = int(torch.unique(labels).numel())
        if present < classes:
            raise _BadFile(f"the {split} labels take only {present} of the {classes} classes "
                           f"(all-zero or damaged labels)")


def _check_rows(key: str, n_train: int, n_test: int) -> None:
    spec = SPECS[key]
    if (n_train, n_test) == (spec.test_rows, spec.train_rows):
        raise _BadFile(f"train and test are swapped: {n_train} training and {n_test} test rows, but the official "
                       f"files hold {spec.train_rows} and {spec.test_rows}")
    if (n_train, n_test) != (spec.train_rows, spec.test_rows):
        raise _BadFile(f"{n_train} training and {n_test} test rows, but the official files hold "
                       f"{spec.train_rows} and {spec.test_rows}")


def _check_checksums(key: str, files: list[Path]) -> None:
    """Every file whose official checksum is known must have it (before anything reads it)."""
    known = {name: (md5, "md5") for name, md5 in _cifar_md5(key).items()} if key.startswith("cifar") else {
        name: (sha, "sha256") for name, sha in IDX_SHA256.get(key, {}).items()}
    for f in files:
        if f.name not in known:
            continue
        want, algorithm = known[f.name]
        got = file_digest(f, algorithm)
        if got != want:
            source = "torchvision's md5 list" if algorithm == "md5" else "the official release"
            raise _BadFile(f"{f.name} is not the official file ({algorithm} {got[:12]}..., {source} says "
                           f"{want[:12]}...){'; it was not unpickled' if algorithm == 'md5' else ''}")


def _cifar_md5(key: str) -> dict[str, str]:
    cls = _classes(key)[0]
    return {**{f: md5 for f, md5 in cls.train_list + cls.test_list}, cls.meta["filename"]: cls.meta["md5"]}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain data only: a CIFAR batch cannot run code
    even when its checksum is not checked (``verify=False``)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise _BadFile(f"it holds a {module}.{name} object, not only arrays and plain data; not read")
        return super().find_class(module, name)


def _read_cifar(key: str, folder: Path, official: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 ``[N, 3, 32, 32]`` images and int64 labels of the training and test files."""
    cls = _classes(key)[0]
    label_key = "fine_labels" if key == "cifar100" else "labels"
    out = []
    for split, names in (("training", cls.train_list), ("test", cls.test_list)):
        xs, ys = [], []
        for name, _ in names:
            path = folder / name
            try:
                with open(path, "rb") as f:
                    batch = _ArraysOnly(f, encoding="latin1").load()
            except _BadFile as e:
                raise _BadFile(f"{name}: {e}") from e
            except Exception as e:  # truncated or not a pickle
                raise _BadFile(f"{name} is not a readable CIFAR batch ({type(e).__name__}: {_one_line(e, 120)})") from e
            data = batch.get("data") if isinstance(batch, dict) else None
            labels = batch.get(label_key) if isinstance(batch, dict) else None
            if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or labels is None:
                raise _BadFile(f"{name} does not hold a uint8 'data' array and {label_key!r}")
            if data.shape[1] != 3 * 32 * 32:
                raise _BadFile(f"{name} holds rows of {data.shape[1]} values, not 3x32x32 = 3072")
            if len(labels) != len(data):
                raise _BadFile(f"{name} holds {len(data)} images but {len(labels)} labels")
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(np.asarray(labels, dtype=np.int64).reshape(-1))
        out += [torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))]
    return out[0], out[1], out[2], out[3]


def _read_mnist(key: str, root: Path, official: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 ``[N, 1, 28, 28]`` images and int64 labels, headers checked before torchvision reads them."""
    cls = _classes(key)[0]
    raw = root / cls.__name__ / "raw"
    size = SPECS[key].size
    if all((raw / f).is_file() for f in _MNIST_FILES):
        counts = {f: _check_idx(raw / f, "images" in f, size) for f in _MNIST_FILES}
        for split in ("train", "t10k"):
            n_img, n_lab = counts[f"{split}-images-idx3-ubyte"], counts[f"{split}-labels-idx1-ubyte"]
            if n_img != n_lab:
                raise _BadFile(f"{split}-images holds {n_img} images but {split}-labels {n_lab} labels")
    out = []
    for train in (True, False):
        tv = cls(os.fspath(root), train=train, download=False)
        images = torch.as_tensor(tv.data, dtype=torch.uint8)
        if images.ndim != 3 or tuple(images.shape[1:]) != (size, size):
            raise _BadFile(f"the {'training' if train else 'test'} images are {tuple(images.shape[1:])}, not {size}x{size}")
        labels = torch.as_tensor(np.asarray(tv.targets), dtype=torch.int64).reshape(-1)
        if len(labels) != len(images):
            raise _BadFile(f"{len(images)} images but {len(labels)} labels")
        out += [images.unsqueeze(1), labels]
    return out[0], out[1], out[2], out[3]


# ---------------------------------------------------------------------- torchvision


@lru_cache(maxsize=None)
def _classes(key: str):
    """(the class whose on-disk layout and file lists are read, the class that downloads)."""
    from torchvision import datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "kmnist": tvd.KMNIST, "cifar10": tvd.CIFAR10,
           "cifar100": tvd.CIFAR100}[key]
    return cls, cls


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
    absent = [p.name for p in sources if not p.is_file()]
    if len(absent) == len(sources):
        return False
    if absent:  # a damaged installation, not "no Debian files": name what is missing
        raise DataUnavailableError(
            f"dataset 'fashion_mnist': {src} lacks {', '.join(absent)} (the other files are there); "
            f"reinstall it (`apt-get install --reinstall dataset-fashion-mnist`)")
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


def _load_torchvision(key: str, root: Path, download: bool, factor: int, verify: bool = True) -> Dataset:
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

    files = _source_files(key, root)
    try:
        if verify and key.startswith("cifar"):  # before anything reads them: a CIFAR batch is a pickle
            _check_checksums(key, files)
        reader = _read_cifar if key.startswith("cifar") else _read_mnist
        x_train, y_train, x_test, y_test = reader(key, folder if key.startswith("cifar") else root, verify)
        if tuple(x_train.shape[1:]) != tuple(x_test.shape[1:]):
            raise _BadFile(f"training images are {tuple(x_train.shape[1:])} but test images "
                           f"{tuple(x_test.shape[1:])}")
        _check_split_labels(key, "training", y_train, False)
        _check_split_labels(key, "test", y_test, False)
        if verify:
            _check_rows(key, len(y_train), len(y_test))
            _check_split_labels(key, "training", y_train, True)
            _check_split_labels(key, "test", y_test, True)
            _check_checksums(key, files)  # idx files: after the checks that say more (swapped, all-zero)
    except _BadFile as e:
        raise DataUnavailableError(
            f"dataset {key!r}: the files in {folder} could not be read ({e}); they are probably truncated, corrupt "
            f"or not {key}'s: delete {folder} and get them again") from e
    except Exception as e:
        # torchvision's reader only asserts the IDX header: say what that means, not "AssertionError"
        detail = (f"{type(e).__name__}: {_one_line(e)}" if str(e).strip() and not isinstance(e, AssertionError)
                  else "unexpected file format: bad magic number or size")
        raise DataUnavailableError(
            f"dataset {key!r}: the files in {folder} could not be read ({detail}); they are probably truncated or "
            f"corrupt: delete {folder} and get them again") from e
    return Dataset(key, _unit_and_pool(x_train, factor), y_train, _unit_and_pool(x_test, factor), y_test,
                   SPECS[key].classes, identity=data_identity(key, root), verified="official" if verify else "structure")


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
