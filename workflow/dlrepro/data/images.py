"""Image sets: MNIST (IDX files) and CIFAR-10 (binary version) read without torchvision.

Output format (``results/data/<data set>/``):

``train_images.npy``, ``test_images.npy``
    ``float32`` arrays of shape ``(N, C, H, W)`` with values in ``[0, 1]`` (pixel / 255).
``train_labels.npy``, ``test_labels.npy``
    ``int64`` class labels ``0..9``.
``manifest.json``
    Source files and sha256, ``source`` (``official``: upstream train/test;
    ``test-file``: MNIST's 10,000-image test file split by a seeded permutation), counts,
    per-channel mean and std of the training images, array checksums.
"""

from __future__ import annotations

import gzip
import struct
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dlrepro.data.text import DataError
from dlrepro.io import save_npy, sha256_file, write_json
from dlrepro.log import get_logger


# the split each image set gets when ``source`` is not given: MNIST's is the default of
# ``data.images.mnist_source`` (tests/test_defaults.py holds the two together); CIFAR-10
# has only its official split
DEFAULT_SOURCE = {"mnist": "test-file", "cifar10": "official"}


@dataclass
class ImageSettings:
    """``data.images`` as one image set's preparation takes it: the workflow passes
    ``source`` (``data.images.mnist_source`` for MNIST, ``official`` otherwise); a direct
    call may leave it out and gets the set's :data:`DEFAULT_SOURCE`."""

    source: str | None = None  # "official" | "test-file" (MNIST only); None: DEFAULT_SOURCE
    test_fraction: float = 0.2  # for "test-file"
    max_train: int | None = None
    seed: int = 0

    def for_dataset(self, dataset: str) -> ImageSettings:
        """These settings with ``source`` filled in for ``dataset``."""
        if self.source is not None:
            return self
        return replace(self, source=DEFAULT_SOURCE.get(dataset, "official"))


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file: ``uint8`` images (N, rows, cols) or labels (N,)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 8:
        raise DataError(f"{path}: too short for an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: {body.size} bytes of data for shape {dims}")
    return body.reshape(dims)


def read_cifar10(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read ``cifar-10-binary.tar.gz``: records of 1 label byte + 3072 pixel bytes (CHW)."""
    out: dict[str, list] = {"train": [], "test": []}
    with tarfile.open(path, "r:gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            name = Path(member.name).name
            split = "train" if name.startswith("data_batch_") else "test" if name == "test_batch.bin" else None
            if split is None:
                continue
            raw = np.frombuffer(tar.extractfile(member).read(), dtype=np.uint8)
            if raw.size % 3073:
                raise DataError(f"{path}:{member.name}: size {raw.size} is not a multiple of 3073")
            rec = raw.reshape(-1, 3073)
            out[split].append((rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0].astype(np.int64)))
    if not out["train"] or not out["test"]:
        raise DataError(f"{path}: no data_batch_*.bin / test_batch.bin members")
    return {
        k: (np.concatenate([x for x, _ in v]), np.concatenate([y for _, y in v]))
        for k, v in out.items()
    }


def _split_test_file(images, labels, test_fraction, seed):
    perm = np.random.default_rng([seed, 0x1AA6E]).permutation(len(images))
    n_test = int(round(test_fraction * len(images)))
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return (images[train], labels[train]), (images[test], labels[test])


def prepare_images(
    dataset: str, sources: dict[str, Path], settings: ImageSettings, out_dir: Path
) -> dict:
    log = get_logger("data", dataset=dataset)
    out_dir = Path(out_dir)
    settings = settings.for_dataset(dataset)
    if dataset == "mnist":
        test = (read_idx(sources["t10k-images-idx3-ubyte.gz"]), read_idx(sources["t10k-labels-idx1-ubyte.gz"]))
        if settings.source == "test-file":
            train, test = _split_test_file(*test, settings.test_fraction, settings.seed)
        elif settings.source == "official":
            train = (
                read_idx(sources["train-images-idx3-ubyte.gz"]),
                read_idx(sources["train-labels-idx1-ubyte.gz"]),
            )
        else:
            raise DataError(f"data.images.mnist_source: unknown value {settings.source!r}")
        train = (train[0][:, None], train[1].astype(np.int64))
        test = (test[0][:, None], test[1].astype(np.int64))
    elif dataset == "cifar10":
        if settings.source != "official":
            raise DataError("cifar10 has only the official train/test split")
        parts = read_cifar10(sources["cifar-10-binary.tar.gz"])
        train, test = parts["train"], parts["test"]
    else:
        raise DataError(f"{dataset!r} is not an image data set")

    if settings.max_train is not None and len(train[0]) > settings.max_train:
        keep = np.sort(
            np.random.default_rng([settings.seed, 0x7A1]).choice(len(train[0]), settings.max_train, replace=False)
        )
        train = (train[0][keep], train[1][keep])

    arrays = {}
    for split, (x, y) in (("train", train), ("test", test)):
        if len(x) == 0:
            raise DataError(f"{dataset}: the {split} split is empty")
        xf = (x.astype(np.float32) / 255.0).astype(np.float32)
        save_npy(out_dir / f"{split}_images.npy", xf)
        save_npy(out_dir / f"{split}_labels.npy", y.astype(np.int64))
        arrays[split] = xf
        log.info("%s: %d images of shape %s", split, len(xf), xf.shape[1:])
    tr = arrays["train"]
    manifest = {
        "dataset": dataset,
        "kind": "images",
        "sources": {n: {"sha256": sha256_file(p)} for n, p in sorted(sources.items())},
        "settings": settings.__dict__,
        "shape": list(tr.shape[1:]),
        "n_classes": 10,
        "channel_mean": tr.mean(axis=(0, 2, 3)).tolist(),
        "channel_std": tr.std(axis=(0, 2, 3)).tolist(),
        "splits": {
            s: {
                "n_images": int(len(arrays[s])),
                "images_sha256": sha256_file(out_dir / f"{s}_images.npy"),
                "labels_sha256": sha256_file(out_dir / f"{s}_labels.npy"),
            }
            for s in ("train", "test")
        },
    }
    write_json(out_dir / "manifest.json", manifest)
    return manifest
