"""Tests of tssm.data on tiny files written in the real on-disk formats (no network)."""

from __future__ import annotations

import gzip
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tssm.data import DATASETS, Dataset, load_dataset
from tssm.errors import ConfigError, DataUnavailableError

N_TRAIN, N_TEST = 6, 4
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}


# ----------------------------------------------------------------------------- fixtures


def mnist_images(n: int, offset: int) -> np.ndarray:
    """uint8 [n, 28, 28]; image i pixel (r, c) = (r * 28 + c + 3 * i + offset) % 256."""
    r = np.arange(28)[:, None]
    c = np.arange(28)[None, :]
    i = np.arange(n)[:, None, None]
    return ((r * 28 + c + 3 * i + offset) % 256).astype(np.uint8)


def mnist_labels(n: int, offset: int) -> np.ndarray:
    return ((np.arange(n) * 3 + offset) % 10).astype(np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx (SN3 / Pascal Vincent) format: big-endian magic 0x0000_08_ND, dims, data."""
    assert array.dtype == np.uint8
    magic = {3: 2051, 1: 2049}[array.ndim]  # 0x803 images, 0x801 labels
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


def mnist_arrays() -> dict[str, np.ndarray]:
    return {
        "train-images-idx3-ubyte": mnist_images(N_TRAIN, 0),
        "train-labels-idx1-ubyte": mnist_labels(N_TRAIN, 0),
        "t10k-images-idx3-ubyte": mnist_images(N_TEST, 100),
        "t10k-labels-idx1-ubyte": mnist_labels(N_TEST, 7),
    }


def write_mnist_raw(root: Path, folder: str) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for name, array in mnist_arrays().items():
        (raw / name).write_bytes(idx_bytes(array))


def write_mnist_gz(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in mnist_arrays().items():
        (directory / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))


def pool(images: np.ndarray, k: int) -> np.ndarray:
    """Reference k x k average pooling of [N, C, H, W] uint8 -> float in [0, 1]."""
    n, c, h, w = images.shape
    x = images.astype(np.float64).reshape(n, c, h // k, k, w // k, k)
    return x.mean(axis=(3, 5)) / 255.0


def cifar_images(n: int, offset: int) -> np.ndarray:
    """uint8 [n, 3, 32, 32]; pixel (ch, r, c) of image i = (7*ch + 5*r + c + 11*i + offset) % 256."""
    ch = np.arange(3)[:, None, None]
    r = np.arange(32)[None, :, None]
    c = np.arange(32)[None, None, :]
    i = np.arange(n)[:, None, None, None]
    return ((7 * ch + 5 * r + c + 11 * i + offset) % 256).astype(np.uint8)


def dump(path: Path, obj: dict) -> None:
    # The real batches are Python 2 pickles whose keys torchvision reads as str
    # (pickle.load(..., encoding="latin1")); protocol 2 with str keys reads the same.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for b in range(1, 6):  # two images in each of data_batch_1..5
        x = cifar_images(2, 20 * b)
        y = [(b * 2 + j) % 10 for j in range(2)]
        dump(folder / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5", "labels": y,
                                           "data": x.reshape(2, -1), "filenames": ["a.png", "b.png"]})
        xs.append(x)
        ys += y
    x_te = cifar_images(3, 200)
    y_te = [9, 0, 4]
    dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": y_te,
                                  "data": x_te.reshape(3, -1), "filenames": ["c", "d", "e"]})
    dump(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)],
                                    "num_cases_per_batch": 2, "num_vis": 3072})
    return np.concatenate(xs), ys, x_te, y_te


def write_cifar100(root: Path) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    x_tr, y_tr = cifar_images(5, 1), [0, 99, 42, 17, 63]
    x_te, y_te = cifar_images(2, 77), [98, 3]
    for name, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        dump(folder / name, {"filenames": ["f"] * len(y), "batch_label": name, "fine_labels": y,
                             "coarse_labels": [v // 5 for v in y], "data": x.reshape(len(y), -1)})
    dump(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                           "coarse_label_names": [f"c{i}" for i in range(20)]})
    return x_tr, y_tr, x_te, y_te


@pytest.fixture
def no_debian_fashion(tmp_path, monkeypatch):
    """Point the Debian Fashion-MNIST directory at an empty folder."""
    empty = tmp_path / "no-debian"
    empty.mkdir()
    monkeypatch.setenv("TSSM_FASHION_MNIST_DIR", str(empty))
    return empty


def check_dtypes(ds: Dataset) -> None:
    assert ds.x_train.dtype == torch.float32 and ds.x_test.dtype == torch.float32
    assert ds.y_train.dtype == torch.int64 and ds.y_test.dtype == torch.int64
    assert ds.x_train.ndim == 4 and ds.y_train.ndim == 1
    assert ds.x_train.shape[0] == ds.y_train.shape[0] and ds.x_test.shape[0] == ds.y_test.shape[0]
    for x in (ds.x_train, ds.x_test):
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


# ------------------------------------------------------------------------------- digits


def test_datasets_tuple():
    assert DATASETS == ("digits", "mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100")


def test_digits_shapes_values_and_split():
    ds = load_dataset("digits")
    assert ds.name == "digits" and ds.num_classes == 10
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.y_train.shape == (1437,) and ds.y_test.shape == (360,)
    assert ds.input_shape == (1, 8, 8)
    check_dtypes(ds)
    assert float(ds.x_train.max()) == 1.0  # 16 / 16: not downsampled, not rescaled twice
    assert set(ds.y_train.tolist()) == set(range(10)) == set(ds.y_test.tolist())
    # values are k / 16 exactly
    assert torch.equal(ds.x_train * 16, torch.round(ds.x_train * 16))
    # stratified: every class has 35-37 test examples
    counts = torch.bincount(ds.y_test, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37

    again = load_dataset("digits", downsample=4)  # downsample is ignored for digits
    for a, b in zip((ds.x_train, ds.y_train, ds.x_test, ds.y_test),
                    (again.x_train, again.y_train, again.x_test, again.y_test)):
        assert torch.equal(a, b)


def test_digits_matches_sklearn_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    _, x_te, _, y_te = train_test_split(bunch.data, bunch.target, test_size=0.2, random_state=0,
                                        stratify=bunch.target)
    ds = load_dataset("digits")
    assert np.array_equal(ds.y_test.numpy(), y_te)
    assert np.allclose(ds.x_test.reshape(360, 64).numpy(), x_te / 16.0)


def test_subset_and_to():
    ds = load_dataset("digits", device="cpu")
    sub = ds.subset(100, None)
    assert sub.x_train.shape == (100, 1, 8, 8) and sub.x_test.shape == (360, 1, 8, 8)
    assert torch.equal(sub.x_train, ds.x_train[:100]) and torch.equal(sub.y_train, ds.y_train[:100])
    assert sub.subset(None, 5).y_test.shape == (5,)
    assert sub.num_classes == 10 and sub.name == "digits"
    with pytest.raises(ConfigError, match="1437"):
        ds.subset(5000, None)
    with pytest.raises(ConfigError):
        ds.subset(-1, None)
    moved = ds.to("meta")
    assert all(t.device.type == "meta" for t in (moved.x_train, moved.y_train, moved.x_test, moved.y_test))
    assert moved.input_shape == (1, 8, 8)
    assert ds.x_train.device.type == "cpu"


# ------------------------------------------------------------------------ MNIST family


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "kmnist"])
def test_mnist_family_from_torchvision_raw(name, tmp_path, no_debian_fashion):
    root = tmp_path / "data"
    write_mnist_raw(root, MNIST_FOLDERS[name])
    ds = load_dataset(name, root=root, download=False, verify=False)
    assert ds.name == name and ds.num_classes == 10
    assert ds.x_train.shape == (N_TRAIN, 1, 14, 14) and ds.x_test.shape == (N_TEST, 1, 14, 14)
    assert ds.input_shape == (1, 14, 14)
    check_dtypes(ds)
    # hand-computed: image 0, block (0, 0) holds pixels 0, 1, 28, 29
    assert ds.x_train[0, 0, 0, 0].item() == pytest.approx((0 + 1 + 28 + 29) / 4 / 255, abs=1e-7)
    arrays = mnist_arrays()
    exp_train = pool(arrays["train-images-idx3-ubyte"][:, None], 2)
    exp_test = pool(arrays["t10k-images-idx3-ubyte"][:, None], 2)
    assert np.allclose(ds.x_train.numpy(), exp_train, atol=1e-6)
    assert np.allclose(ds.x_test.numpy(), exp_test, atol=1e-6)
    assert ds.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist() == [0, 3, 6, 9, 2, 5]
    assert ds.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist() == [7, 0, 3, 6]


def test_mnist_downsample_factors(tmp_path):
    write_mnist_raw(tmp_path, "MNIST")
    full = load_dataset("mnist", root=tmp_path, download=False, downsample=1, verify=False)
    assert full.x_train.shape == (N_TRAIN, 1, 28, 28)
    assert torch.equal(full.x_train[:, 0] * 255, torch.from_numpy(mnist_images(N_TRAIN, 0)).float())
    four = load_dataset("mnist", root=tmp_path, download=False, downsample=4, verify=False)
    assert four.x_test.shape == (N_TEST, 1, 7, 7)
    assert np.allclose(four.x_test.numpy(), pool(mnist_images(N_TEST, 100)[:, None], 4), atol=1e-6)
    for bad in (3, 0, -2, 2.0, True, "2"):
        with pytest.raises(ConfigError, match="downsample"):
            load_dataset("mnist", root=tmp_path, download=False, downsample=bad)


def test_fashion_mnist_from_debian_gz(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    write_mnist_gz(debian)
    monkeypatch.setenv("TSSM_FASHION_MNIST_DIR", str(debian))
    root = tmp_path / "data"
    ds = load_dataset("fashion_mnist", root=root, download=False, verify=False)
    assert ds.x_train.shape == (N_TRAIN, 1, 14, 14) and ds.x_test.shape == (N_TEST, 1, 14, 14)
    assert np.allclose(ds.x_train.numpy(), pool(mnist_images(N_TRAIN, 0)[:, None], 2), atol=1e-6)
    assert ds.y_test.tolist() == [7, 0, 3, 6]
    raw = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(MNIST_FILES)  # no temp files left
    assert (raw / "train-images-idx3-ubyte").read_bytes() == idx_bytes(mnist_images(N_TRAIN, 0))
    # the decompressed copy is used from then on, even without the Debian files
    monkeypatch.setenv("TSSM_FASHION_MNIST_DIR", str(tmp_path / "gone"))
    again = load_dataset("fashion_mnist", root=root, download=False, verify=False)
    assert torch.equal(again.x_train, ds.x_train)


def test_fashion_mnist_missing_everywhere(tmp_path, no_debian_fashion):
    with pytest.raises(DataUnavailableError) as info:
        load_dataset("fashion_mnist", root=tmp_path / "data", download=False)
    msg = str(info.value)
    assert str(tmp_path / "data" / "FashionMNIST" / "raw") in msg
    assert str(no_debian_fashion) in msg
    assert "apt-get install dataset-fashion-mnist" in msg


# ------------------------------------------------------------------------------- CIFAR


def test_cifar10_from_pickled_batches(tmp_path):
    x_tr, y_tr, x_te, y_te = write_cifar10(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path, download=False, verify=False)
    assert ds.name == "cifar10" and ds.num_classes == 10
    assert ds.x_train.shape == (10, 3, 16, 16) and ds.x_test.shape == (3, 3, 16, 16)
    assert ds.input_shape == (3, 16, 16)
    check_dtypes(ds)
    # hand-computed: image 0 of data_batch_1 (offset 20), green channel, block (0, 0):
    # pixels 7 + 20 + {0, 1, 5, 6}
    assert ds.x_train[0, 1, 0, 0].item() == pytest.approx((27 * 4 + 12) / 4 / 255, abs=1e-7)
    assert np.allclose(ds.x_train.numpy(), pool(x_tr, 2), atol=1e-6)
    assert np.allclose(ds.x_test.numpy(), pool(x_te, 2), atol=1e-6)
    assert ds.y_train.tolist() == y_tr and ds.y_test.tolist() == y_te
    full = load_dataset("cifar10", root=tmp_path, download=False, downsample=1, verify=False)
    assert torch.equal(full.x_test * 255, torch.from_numpy(x_te).float())


def test_cifar100_fine_labels(tmp_path):
    x_tr, y_tr, x_te, y_te = write_cifar100(tmp_path)
    ds = load_dataset("cifar100", root=tmp_path, download=False, verify=False)
    assert ds.num_classes == 100
    assert ds.x_train.shape == (5, 3, 16, 16) and ds.x_test.shape == (2, 3, 16, 16)
    check_dtypes(ds)
    assert np.allclose(ds.x_train.numpy(), pool(x_tr, 2), atol=1e-6)
    assert np.allclose(ds.x_test.numpy(), pool(x_te, 2), atol=1e-6)
    assert ds.y_train.tolist() == [0, 99, 42, 17, 63] and ds.y_test.tolist() == [98, 3]


def test_cifar_partial_folder_is_unavailable(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataUnavailableError) as info:
        load_dataset("cifar10", root=tmp_path, download=False, verify=False)
    msg = str(info.value)
    assert "data_batch_3" in msg and str(tmp_path / "cifar-10-batches-py") in msg
    assert "torchvision.datasets.CIFAR10" in msg


def test_corrupt_file_is_reported(tmp_path):
    write_mnist_raw(tmp_path, "KMNIST")
    path = tmp_path / "KMNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(DataUnavailableError, match="corrupt") as info:
        load_dataset("kmnist", root=tmp_path, download=False)
    assert info.value.__cause__ is not None


# ---------------------------------------------------------------------- errors, offline


def test_missing_mnist_offline(tmp_path):
    with pytest.raises(DataUnavailableError) as info:
        load_dataset("mnist", root=tmp_path, download=False)
    msg = str(info.value)
    assert "'mnist'" in msg
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "download=True" in msg and "torchvision.datasets.MNIST" in msg
    assert "apt-get" not in msg


def test_failed_download_is_wrapped(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def no_network(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: <urlopen error no network>")

    monkeypatch.setattr(tvd.KMNIST, "download", no_network)
    t0 = time.perf_counter()
    with pytest.raises(DataUnavailableError) as info:
        load_dataset("kmnist", root=tmp_path / "data", download=True)
    assert time.perf_counter() - t0 < 5
    assert isinstance(info.value.__cause__, RuntimeError)
    msg = str(info.value)
    assert "downloading it failed" in msg and str(tmp_path / "data" / "KMNIST" / "raw") in msg


def test_unknown_dataset():
    with pytest.raises(ConfigError) as info:
        load_dataset("imagenet")
    for name in DATASETS:
        assert name in str(info.value)
    assert isinstance(info.value, ValueError)


def test_name_spelling_variants(tmp_path):
    write_mnist_raw(tmp_path, "FashionMNIST")
    assert load_dataset("Fashion-MNIST", root=tmp_path, download=False, verify=False).name == "fashion_mnist"


# ------------------------------------------------------------------ real Fashion-MNIST

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian(tmp_path, monkeypatch):
    monkeypatch.setenv("TSSM_FASHION_MNIST_DIR", str(DEBIAN_FASHION))
    ds = load_dataset("fashion_mnist", root=tmp_path, download=False)
    assert ds.x_train.shape == (60000, 1, 14, 14) and ds.x_test.shape == (10000, 1, 14, 14)
    check_dtypes(ds)
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10


def test_label_out_of_range_is_a_clear_error(tmp_path):
    write_mnist_raw(tmp_path, "MNIST")
    labels = mnist_labels(N_TRAIN, 0)
    labels[3] = 12
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(DataUnavailableError, match=r"labels from 0 to 12, but it has 10 classes"):
        load_dataset("mnist", tmp_path, download=False)


def test_corrupt_idx_magic_names_the_problem(tmp_path):
    write_mnist_raw(tmp_path, "MNIST")
    f = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    f.write_bytes(b"\x00\x00\x00\x00" + f.read_bytes()[4:])
    with pytest.raises(DataUnavailableError, match="could not be read") as e:
        load_dataset("mnist", tmp_path, download=False)
    assert "()" not in str(e.value) and "AssertionError" not in str(e.value) and "delete" in str(e.value)
    assert "bad magic number or size" in str(e.value)


def test_truncated_debian_gz_is_a_clear_error(tmp_path, monkeypatch):
    src = tmp_path / "debian"
    write_mnist_gz(src)
    gz = src / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[: len(gz.read_bytes()) // 2])
    monkeypatch.setenv("TSSM_FASHION_MNIST_DIR", str(src))
    with pytest.raises(DataUnavailableError, match="truncated or corrupt.*reinstall"):
        load_dataset("fashion_mnist", tmp_path / "data", download=False)
    assert not list((tmp_path / "data").rglob(".train-images*"))  # no temp file left behind


# ------------------------------------------------------------ verified before trusted (issue 24)

import hashlib  # noqa: E402
import os  # noqa: E402

from tssm import data as data_module  # noqa: E402
from tssm.data import DatasetSpec, data_identity  # noqa: E402

V_TRAIN, V_TEST = 20, 10  # every class present in both splits


def write_idx_set(root: Path, folder: str, train: tuple[int, int] = (V_TRAIN, 28), test: tuple[int, int] = (V_TEST, 28),
                  labels=None) -> Path:
    """idx files of ``train``/``test`` = (rows, image side); labels cycle through 0..9 unless given."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, (n, side), offset in (("train", train, 0), ("t10k", test, 50)):
        img = ((np.arange(n * side * side).reshape(n, side, side) + offset) % 256).astype(np.uint8)
        lab = (np.arange(n) % 10).astype(np.uint8) if labels is None else labels(prefix, n)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, side, side) + img.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(lab))
    return raw


@pytest.fixture
def small_official(monkeypatch, no_debian_fashion):
    """The official row counts of the MNIST family made V_TRAIN / V_TEST, so that small files
    take the verified path (rows, classes, checksums) of real ones."""
    for key in ("mnist", "fashion_mnist", "kmnist"):
        monkeypatch.setitem(data_module.SPECS, key, DatasetSpec(10, 1, 28, V_TRAIN, V_TEST))
    monkeypatch.setitem(data_module.IDX_SHA256, "fashion_mnist", {})


def one_line_error(name: str, root: Path) -> str:
    with pytest.raises(DataUnavailableError) as info:
        load_dataset(name, root, download=False)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def test_small_official_set_loads_and_is_described(tmp_path, small_official):
    write_idx_set(tmp_path, "MNIST")
    ds = load_dataset("mnist", tmp_path, download=False)
    d = ds.describe()
    assert d["rows"] == {"train": V_TRAIN, "test": V_TEST} and d["input_shape"] == [1, 14, 14]
    assert d["verified"] == "official" and d["identity"] == data_identity("mnist", tmp_path)
    assert ds.subset(5, 3).with_validation(0.2).describe()["rows"] == {"train": 4, "test": 3, "val": 1}


@pytest.mark.parametrize("fault, layout, expected", [
    ("train and test swapped", dict(train=(V_TEST, 28), test=(V_TRAIN, 28)), "train and test are swapped"),
    ("32x32 images", dict(train=(V_TRAIN, 32), test=(V_TEST, 32)), "holds 32x32 images, not the dataset's 28x28"),
    ("27x27 test images", dict(test=(V_TEST, 27)), "t10k-images-idx3-ubyte holds 27x27 images"),
    ("all-zero labels", dict(labels=lambda p, n: np.zeros(n, np.uint8)), "take only 1 of the 10 classes"),
    ("fewer rows", dict(train=(V_TRAIN - 2, 28)), f"{V_TRAIN - 2} training and {V_TEST} test rows, but the official"),
])
def test_files_that_lie_are_one_line_errors(tmp_path, small_official, fault, layout, expected):
    write_idx_set(tmp_path, "KMNIST", **layout)
    msg = one_line_error("kmnist", tmp_path)
    assert expected in msg and "delete" in msg, (fault, msg)


def test_images_and_labels_of_different_counts(tmp_path, small_official):
    raw = write_idx_set(tmp_path, "MNIST")
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes((np.arange(V_TEST - 1) % 10).astype(np.uint8)))
    assert f"holds {V_TEST} images but t10k-labels {V_TEST - 1} labels" in one_line_error("mnist", tmp_path)


def test_fashion_mnist_content_checksums_catch_shuffled_labels(tmp_path, small_official, monkeypatch):
    raw = write_idx_set(tmp_path, "FashionMNIST")
    monkeypatch.setitem(data_module.IDX_SHA256, "fashion_mnist", {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in raw.iterdir()})
    load_dataset("fashion_mnist", tmp_path, download=False)  # the "official" files load
    labels = np.frombuffer((raw / "train-labels-idx1-ubyte").read_bytes()[8:], np.uint8).copy()
    np.random.default_rng(0).shuffle(labels)  # same rows, same classes: only the checksum sees it
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    msg = one_line_error("fashion_mnist", tmp_path)
    assert "train-labels-idx1-ubyte is not the official file (sha256" in msg


def test_real_fashion_mnist_checksums_are_the_debian_files():
    """The sha256 list is the content of Debian's dataset-fashion-mnist (Zalando's release)."""
    if not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    for name, sha in data_module.IDX_SHA256["fashion_mnist"].items():
        with gzip.open(DEBIAN_FASHION / f"{name}.gz", "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == sha


def test_debian_folder_missing_one_gz_names_that_file(tmp_path, monkeypatch):
    src = tmp_path / "debian"
    write_mnist_gz(src)
    (src / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("TSSM_FASHION_MNIST_DIR", str(src))
    msg = one_line_error("fashion_mnist", tmp_path / "data")
    assert "lacks t10k-labels-idx1-ubyte.gz" in msg
    assert "train-images" not in msg and "reinstall" in msg


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("verify", [True, False])
def test_malicious_cifar_batch_never_runs(tmp_path, verify):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({"data": _Evil(marker), "labels": [0]}, f, protocol=2)
    with pytest.raises(DataUnavailableError) as info:
        load_dataset("cifar10", tmp_path, download=False, verify=verify)
    msg = str(info.value)
    assert not marker.exists(), "the pickle ran code"
    assert "\n" not in msg and "data_batch_1" in msg
    # verified: refused by torchvision's md5 before unpickling; unverified: by the unpickler
    assert ("not the official file (md5" in msg and "not unpickled" in msg) if verify else "posix.system" in msg


def test_cifar_official_md5_list_is_torchvisions():
    import torchvision.datasets as tvd

    md5 = data_module._cifar_md5("cifar10")
    assert md5["data_batch_1"] == dict(tvd.CIFAR10.train_list)["data_batch_1"] and md5["batches.meta"] == tvd.CIFAR10.meta["md5"]


def test_data_identity_is_content_not_path(tmp_path, small_official):
    write_idx_set(tmp_path / "a", "MNIST")
    write_idx_set(tmp_path / "b", "MNIST")
    assert data_identity("mnist", tmp_path / "a") == data_identity("mnist", tmp_path / "b")
    write_idx_set(tmp_path / "b", "MNIST", labels=lambda p, n: ((np.arange(n) + 1) % 10).astype(np.uint8))
    assert data_identity("mnist", tmp_path / "a") != data_identity("mnist", tmp_path / "b")
    assert data_identity("mnist", tmp_path / "none") != data_identity("mnist", tmp_path / "a")
    assert data_identity("digits") == "sklearn-digits"
