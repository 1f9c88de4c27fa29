"""Every public data set the workflow can use: where it lives upstream and its checksums.

A mirror folder laid out as ``<data set>/<upstream file name>`` replaces the network (see
:mod:`dlrepro.data.download`); the checksums below must match either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlrepro.errors import UserError


class UnknownName(UserError, KeyError):
    """An unknown data set or file name; ``str()`` is the message (``KeyError`` quotes it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class RemoteFile:
    """One upstream file.

    ``urls`` are tried in order. The expected content is given by ``sha256`` and/or ``md5``;
    where upstream serves the file through Git LFS at a pinned revision, ``lfs_pointer_url``
    points at the pointer file whose ``oid sha256:...`` line is the expected sha256 (it is
    immutable at that revision), fetched before the download and checked the same way.
    """

    name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    lfs_pointer_url: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        if not (self.sha256 or self.md5 or self.lfs_pointer_url):
            raise ValueError(f"{self.name}: a registry entry needs a checksum")


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: str  # "text" | "images" | "molecules"
    files: tuple[RemoteFile, ...]
    licence: str
    description: str
    # text corpora: how the raw text is cut into documents
    doc_separator: str | None = None
    extra: dict = field(default_factory=dict)

    def file(self, name: str) -> RemoteFile:
        for f in self.files:
            if f.name == name:
                return f
        raise UnknownName(
            f"data set {self.name!r} has no file {name!r}; its files: {', '.join(f.name for f in self.files)}"
        )


_TINYSTORIES_REV = "f54c09fd23315a6f9c86f9dc80f725de7d8f9c64"
_HF = "https://huggingface.co/datasets/roneneldan/TinyStories"
_MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


def _mnist(name: str, md5: str, sha256: str | None = None) -> RemoteFile:
    return RemoteFile(name, tuple(u + name for u in _MNIST_URLS), sha256=sha256, md5=md5)


DATASETS: dict[str, Dataset] = {
    "tinyshakespeare": Dataset(
        name="tinyshakespeare",
        kind="text",
        files=(
            RemoteFile(
                "input.txt",
                (
                    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                    "tinyshakespeare/input.txt",
                ),
                sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                md5="6fb458f1232090904fb40fe944165e91",
                size=1_115_394,
            ),
        ),
        licence="public domain",
        description="Shakespeare's plays, 1.1 MB (karpathy/char-rnn); documents are speeches "
        "(blank-line separated)",
        doc_separator="\n\n",
    ),
    "tinystories": Dataset(
        name="tinystories",
        kind="text",
        files=tuple(
            RemoteFile(
                f"TinyStoriesV2-GPT4-{split}.txt",
                (f"{_HF}/resolve/{_TINYSTORIES_REV}/TinyStoriesV2-GPT4-{split}.txt",),
                lfs_pointer_url=f"{_HF}/raw/{_TINYSTORIES_REV}/TinyStoriesV2-GPT4-{split}.txt",
            )
            for split in ("train", "valid")
        ),
        licence="CDLA-Sharing-1.0",
        description="TinyStories (Eldan & Li 2023), GPT-4 stories, revision "
        f"{_TINYSTORIES_REV[:12]}; documents are stories",
        doc_separator="<|endoftext|>",
    ),
    "mnist": Dataset(
        name="mnist",
        kind="images",
        files=(
            _mnist("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            _mnist("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            _mnist(
                "t10k-images-idx3-ubyte.gz",
                "9fb629c4189551a2d022fa330f9573f3",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            ),
            _mnist(
                "t10k-labels-idx1-ubyte.gz",
                "ec29112dd5afa0611ce80d1b7f02629c",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        ),
        licence="CC BY-SA 3.0 (LeCun, Cortes & Burges)",
        description="MNIST handwritten digits, 60,000 train + 10,000 test, 28x28 grey",
    ),
    "cifar10": Dataset(
        name="cifar10",
        kind="images",
        files=(
            RemoteFile(
                "cifar-10-binary.tar.gz",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
                md5="c32a1d4ab5d03f1284b67883e8d87530",
            ),
        ),
        licence="MIT-like (Krizhevsky 2009)",
        description="CIFAR-10, 50,000 train + 10,000 test, 32x32 RGB, binary version",
    ),
    "moses": Dataset(
        name="moses",
        kind="molecules",
        files=(
            RemoteFile(
                "test.csv",
                (
                    "https://media.githubusercontent.com/media/molecularsets/moses/master/"
                    "data/test.csv",
                ),
                sha256="257165e8f1e1be2d5712db51c93d2b1544564b782dc303d7d19c887c21a858e6",
                md5="b710f75118244ca393d5bed78ef51db0",
            ),
        ),
        licence="MIT",
        description="MOSES test split, 176,074 drug-like SMILES (Git LFS media URL)",
    ),
}


def files_for(dataset: str, subset: str = "all") -> tuple[RemoteFile, ...]:
    """The files a preparation needs. ``subset="test-only"`` is MNIST's offline test file."""
    ds = get(dataset)
    if subset == "all":
        return ds.files
    if subset == "test-only" and dataset == "mnist":
        return tuple(f for f in ds.files if f.name.startswith("t10k"))
    raise UserError(f"data set {dataset!r} has no file subset {subset!r}")


def get(name: str) -> Dataset:
    if name not in DATASETS:
        raise UnknownName(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]
