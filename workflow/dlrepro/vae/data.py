"""The image data of the VAE stage: memory-mapped image arrays, mixes of pools, batches.

Image arrays are ``.npy`` files of float32 ``(N, 1, 28, 28)`` in [0, 1], read memory-mapped:
the real training split is ``<data_dir>/train_images.npy`` (labels ``train_labels.npy``), a
synthetic pool is ``<dir>/images.npy``.

A *mix* (``vae mix``) says which images of which pools a generation trains on. Its JSON
lists the shares in order::

    {"policy", "generation", "seed", "total", "indices_file",
     "shares": [{"source": "real" | "synthetic_k", "path", "sha256", "pool_size",
                 "count", "offset"}, ...]}

and the sidecar ``indices_file`` (``<mix>.indices.npy``, next to the JSON) holds the chosen
0-based item indices of all shares concatenated, share ``i`` at
``[offset_i, offset_i + count_i)``. Item ``j`` of the mix is the ``j``-th of these
(pool, index) pairs; :class:`ImageMix` maps item indices to images without loading the
pools into memory. Which items go into a mix is decided by :mod:`dlrepro.policies`,
which sees only pool names and sizes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlrepro.errors import InputFileError
from dlrepro.io import load_npy, read_json, save_npy, sha256_file, write_json
from dlrepro.policies import manifest as policy_manifest
from dlrepro.policies import mix as policy_mix
from dlrepro.policies import pool_name

if TYPE_CHECKING:  # torch is imported only where batches are built (``vae mix`` needs none)
    import torch

IMAGE_SHAPE = (1, 28, 28)

REAL_IMAGES = "train_images.npy"
REAL_LABELS = "train_labels.npy"
TEST_IMAGES = "test_images.npy"
TEST_LABELS = "test_labels.npy"
SYNTHETIC_IMAGES = "images.npy"


def open_images(path: str | os.PathLike) -> np.ndarray:
    """Memory-map an image array and check that it is float32 ``(N, 1, 28, 28)``."""
    images = load_npy(path)
    if images.dtype != np.float32 or images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise InputFileError(
            f"{path}: expected float32 images of shape (N, {', '.join(map(str, IMAGE_SHAPE))}), "
            f"got {images.dtype} {tuple(images.shape)}"
        )
    return images


@dataclass(frozen=True)
class ImageShare:
    """The images ``indices`` of the pool ``source`` stored at ``path``."""

    source: str
    path: str
    indices: np.ndarray


class ImageMix:
    """The training items of one generation: chosen images of several memory-mapped pools.

    Items are numbered ``0 .. len - 1`` share after share; ``collate(items)`` gathers their
    images into a float32 tensor ``(B, 1, 28, 28)``.
    """

    def __init__(self, shares: list[ImageShare]) -> None:
        shares = [s for s in shares if len(s.indices)]
        if not shares:
            raise InputFileError("the mix has no images")
        self.shares = shares
        self._arrays = [open_images(s.path) for s in shares]
        for share, array in zip(shares, self._arrays):
            if share.indices.min() < 0 or share.indices.max() >= len(array):
                raise InputFileError(
                    f"share {share.source!r} indexes beyond {share.path} ({len(array)} images)"
                )
        counts = np.array([len(s.indices) for s in shares], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])

    @classmethod
    def real(cls, data_dir: str | os.PathLike) -> "ImageMix":
        """All real training images of ``data_dir`` (generation 0)."""
        path = Path(data_dir) / REAL_IMAGES
        n = len(open_images(path))
        return cls([ImageShare("real", str(path), np.arange(n, dtype=np.int64))])

    @classmethod
    def from_mix(cls, mix_path: str | os.PathLike) -> "ImageMix":
        """The images a mix JSON (and its indices sidecar) selects."""
        spec = read_json(mix_path)
        indices = load_npy(Path(mix_path).parent / spec["indices_file"], mmap=False)
        return cls(
            [
                ImageShare(s["source"], s["path"], indices[s["offset"] : s["offset"] + s["count"]])
                for s in spec["shares"]
            ]
        )

    def __len__(self) -> int:
        return int(self._starts[-1])

    def collate(self, items: np.ndarray) -> torch.Tensor:
        import torch

        items = np.asarray(items, dtype=np.int64)
        share_of = np.searchsorted(self._starts, items, side="right") - 1
        out = np.empty((len(items), *IMAGE_SHAPE), dtype=np.float32)
        for s in np.unique(share_of):
            mask = share_of == s
            local = self.shares[s].indices[items[mask] - self._starts[s]]
            out[mask] = self._arrays[s][local]
        return torch.from_numpy(out)

    def composition(self) -> dict[str, int]:
        """How many items come from the real pool and from synthetic pools."""
        real = sum(len(s.indices) for s in self.shares if s.source == "real")
        return {"n_train": len(self), "n_real": int(real), "n_synthetic": int(len(self) - real)}


class LabelledImages:
    """The real training images of ``data_dir`` with their labels, batched as ``(images, labels)``."""

    def __init__(self, data_dir: str | os.PathLike) -> None:
        data_dir = Path(data_dir)
        self.images = open_images(data_dir / REAL_IMAGES)
        self.labels = load_npy(data_dir / REAL_LABELS)
        if len(self.labels) != len(self.images):
            raise InputFileError(f"{data_dir}: {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    def collate(self, items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        items = np.asarray(items, dtype=np.int64)
        images = torch.from_numpy(np.ascontiguousarray(self.images[items]))
        return images, torch.from_numpy(self.labels[items].astype(np.int64))


def build_mix(
    policy: str,
    generation: int,
    seed: int,
    real_dir: str | os.PathLike,
    synthetic_dirs: list[str | os.PathLike],
) -> tuple[dict[str, Any], np.ndarray]:
    """Apply ``policy`` to the real pool and the synthetic pools ``synthetic_1..g``.

    ``synthetic_dirs[k - 1]`` holds pool ``synthetic_k`` (sampled from generation
    ``k - 1``). Returns the mix description (see the module docstring; ``indices_file``
    still unset) and the concatenated indices.
    """
    if len(synthetic_dirs) != generation:
        raise InputFileError(
            f"generation {generation} mixes {generation} synthetic pools, "
            f"got {len(synthetic_dirs)} synthetic directories"
        )
    paths = {"real": Path(real_dir) / REAL_IMAGES}
    for k, d in enumerate(synthetic_dirs, start=1):
        paths[pool_name(k)] = Path(d) / SYNTHETIC_IMAGES
    sizes = {name: len(open_images(path)) for name, path in paths.items()}
    shares = policy_mix(policy, sizes, generation, seed)
    spec = {"policy": policy, "generation": int(generation), "seed": int(seed)}
    spec.update(policy_manifest(shares))
    offset = 0
    for entry, share in zip(spec["shares"], shares):
        path = paths[share.source]
        entry.update(
            path=str(path),
            sha256=sha256_file(path),
            pool_size=sizes[share.source],
            offset=offset,
        )
        offset += share.size
    indices = (
        np.concatenate([s.indices for s in shares]).astype(np.int64)
        if shares
        else np.zeros(0, dtype=np.int64)
    )
    return spec, indices


def write_mix(out: str | os.PathLike, spec: dict[str, Any], indices: np.ndarray) -> None:
    """Write the mix JSON ``out`` and its sidecar ``<out stem>.indices.npy``."""
    out = Path(out)
    sidecar = out.with_suffix(".indices.npy")
    save_npy(sidecar, indices)
    write_json(out, {**spec, "indices_file": sidecar.name})
