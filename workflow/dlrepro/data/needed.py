"""Which data sets a configuration needs, and whether each of their files can be had.

Each stage's rule of what it reads is written once, in :data:`STAGE_DATA`; the Snakefile
(``workflow/rules/common.smk``: ``DATA_NEEDED``), ``python -m dlrepro check-config`` and
``plan`` read it from here. :func:`check_data` runs before anything else is tried (the
Snakefile calls it while it parses, ``check-config`` after validating): a file that neither
``results/`` already holds, nor the mirror, is named on a line of its own with where to put
it; with ``data.allow_network: false`` that line is an error. Nothing here touches the
network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

from dlrepro.data import registry
from dlrepro.data.download import MIRROR_ENV, lfs_pointer_path, mirror_place
from dlrepro.errors import ConfigError


def width_cnn_dataset(cfg: dict[str, Any]) -> str:
    """The image set of the width stage's CNN (``width.cnn.dataset``, MNIST when unset)."""
    return (cfg["width"].get("cnn") or {}).get("dataset") or "mnist"


def _width(cfg: dict[str, Any]) -> list[str]:
    w = cfg["width"]
    return ((["mnist"] if w.get("mlp") else []) + ([cfg["collapse"]["dataset"]] if w.get("lm") else [])
            + ([width_cnn_dataset(cfg)] if w.get("cnn") else []))


# what each stage reads, from the validated config (a stage not listed reads no data set)
STAGE_DATA: dict[str, Callable[[dict[str, Any]], Iterable[str]]] = {
    "data": lambda cfg: cfg["data"]["prepare"],  # prepared even when no enabled stage needs them
    "collapse": lambda cfg: [cfg["collapse"]["dataset"]],
    "scaling": lambda cfg: [cfg["collapse"]["dataset"]],  # the data sweep trains a collapse model
    "vae": lambda cfg: ["mnist"],
    "conformers": lambda cfg: ["moses"] if cfg["conformers"]["source"] == "moses" else [],
    "width": _width,
    "init": lambda cfg: [cfg["init"]["dataset"]],
}


def datasets_needed(cfg: dict[str, Any]) -> set[str]:
    """The data sets the enabled stages of a validated config read (``data.prepare`` with
    the data stage)."""
    return {ds for stage in cfg["stages"] if stage in STAGE_DATA for ds in STAGE_DATA[stage](cfg)}


def prepared_marker(dataset: str, results: str | os.PathLike = "results") -> Path:
    """The file whose presence means ``dataset`` is prepared (common.smk's DATA/CONF_DATA):
    MOSES is read only by the conformers stage, whose prepared set stands for it."""
    return Path(results, "data", "conformers" if dataset == "moses" else dataset, "manifest.json")


def raw_subset(cfg: dict[str, Any], dataset: str) -> str:
    """Which of a data set's files its preparation reads (:func:`registry.files_for`)."""
    if dataset == "mnist" and cfg["data"]["images"]["mnist_source"] == "test-file":
        return "test-only"
    return "all"


def mirror_folder(cfg: dict[str, Any], base_dir: str | os.PathLike | None = None) -> Path | None:
    """The mirror (``data.mirror``, else ``$DLREPRO_DATA_MIRROR``), relative paths from
    ``base_dir`` (the working directory of the run), as :func:`download.resolve_mirror`."""
    value = cfg["data"].get("mirror") or os.environ.get(MIRROR_ENV) or None
    if not value:
        return None
    return (Path(base_dir or ".") / Path(value).expanduser()).resolve()


def check_data(cfg: dict[str, Any], base_dir: str | os.PathLike | None = None,
               results: str = "results") -> list[str]:
    """Every file a needed, unprepared data set still has to obtain, checked against
    ``results/`` and the mirror without the network.

    Returns one line per file the network would have to provide (its URL, and where to put
    it offline); with ``data.allow_network: false`` the first such file raises
    :class:`ConfigError` instead, as does a Git LFS checksum pointer the mirror lacks."""
    base = Path(base_dir or ".")
    mirror = mirror_folder(cfg, base)
    offline = not cfg["data"]["allow_network"]
    lines = []
    for ds in sorted(datasets_needed(cfg)):
        if (base / prepared_marker(ds, results)).exists():
            continue
        for f in registry.files_for(ds, raw_subset(cfg, ds)):
            if (base / results / "data" / "raw" / ds / f.name).exists():
                continue
            if mirror is None or not (mirror / ds / f.name).is_file():
                put_it = mirror_place(ds, f.name, mirror)
                if offline:
                    lacks = "which the mirror lacks," if mirror else "no mirror is set"
                    raise ConfigError(f"data set {ds} needs {f.name}, {lacks} and data.allow_network is false; "
                                      f"download {f.urls[0]} and put it at {put_it}")
                lines.append(f"data: {ds}/{f.name} will be downloaded from {f.urls[0]}; offline, put it at {put_it}")
                continue
            pointer = lfs_pointer_path(mirror, ds, f.name)
            if offline and not (f.sha256 or f.md5) and not pointer.is_file():
                raise ConfigError(
                    f"{ds}/{f.name}'s checksum is published as the Git LFS pointer {f.lfs_pointer_url}, and "
                    f"data.allow_network is false; download it and put it at {pointer}"
                )
    return lines


__all__ = ["STAGE_DATA", "check_data", "datasets_needed", "mirror_folder",
           "prepared_marker", "raw_subset", "width_cnn_dataset"]
