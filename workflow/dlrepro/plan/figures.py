"""Data sizes for the plan: read from the prepared data's manifests when they exist (and were
prepared with the settings the config asks for), otherwise taken from the documented
per-data-set figures below. Every row of the plan says which (``data_source``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# Text corpora. documents: the whole corpus (train + val + test); chars_per_document: mean
# characters of a document (plus one separator); chars_per_token at the vocabulary given.
TEXT_FIGURES: dict[str, dict] = {
    # measured: the default preset's manifest (vocab 512): 7,222 speeches, 1,108,171
    # characters, 568,622 tokens
    "tinyshakespeare": {"documents": 7222, "test_documents": None, "chars_per_document": 153.4,
                        "chars_per_token": 1.95, "at_vocab": 512,
                        "raw_bytes": 1_115_394,
                        "note": "default preset's manifest (vocab 512)"},
    # TinyStoriesV2-GPT4: about 2.72M stories in the train file (karpathy/tinystories-gpt4-clean
    # counts 2,745,330 GPT-4 stories in both files, 2.19e9 characters: 800 per story), the
    # valid file (27,630 stories) is the test split; 4.3 characters a token is an assumption
    # for a 32k BPE (GPT-2's 50k BPE gives about 4.3 on TinyStories)
    "tinystories": {"documents": 2_717_700, "test_documents": 27_630, "chars_per_document": 800.0,
                    "chars_per_token": 4.3, "at_vocab": 32000,
                    "raw_bytes": 2_227_753_162 + 22_502_601,
                    "note": "documented figures (2.72M stories, 800 chars, 4.3 chars/token assumed)"},
}

# Image sets: (train, test) counts of each source, and the image shape.
IMAGE_FIGURES: dict[str, dict] = {
    "mnist": {"official": (60_000, 10_000), "test-file": None, "shape": (1, 28, 28),
              "raw_bytes": {"official": 9_912_422 + 28_881 + 1_648_877 + 4_542,
                            "test-file": 1_648_877 + 4_542}},
    "cifar10": {"official": (50_000, 10_000), "shape": (3, 32, 32), "raw_bytes": {"official": 170_052_171}},
}

# Conformer sets: mean heavy atoms per molecule and the padding of a batch to its largest
# molecule (padded atoms = mean x pad, at most max_heavy_atoms). moses (heavy atoms <= 18):
# the default preset's manifest, 1,029 atoms in 60 molecules (17.2); GEOM-Drugs: 24.9 heavy
# atoms on average (Axelrod & Gomez-Bombarelli 2022); its batch maxima are assumed 1.8x the mean.
MOLECULE_FIGURES: dict[str, dict] = {
    "moses": {"mean_heavy_atoms": 17.2, "pad": 1.05, "conformers_per_test_molecule": None},
    "geom": {"mean_heavy_atoms": 24.9, "pad": 1.8, "conformers_per_test_molecule": 100},
}


@dataclass
class TextData:
    name: str
    train_documents: int
    train_tokens: int
    val_tokens: int
    test_tokens: int
    chars: int
    source: str  # "manifest" or "figures: ..."

    @property
    def tokens_per_document(self) -> float:
        return self.train_tokens / max(1, self.train_documents)


def _manifest(results: Path, name: str) -> dict | None:
    path = results / "data" / name / "manifest.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def text_data(name: str, text_cfg: dict, seed: int, results: Path) -> TextData:
    """Sizes of text corpus ``name`` as the config prepares it."""
    man = _manifest(results, name)
    want = {k: text_cfg.get(k) for k in ("vocab_size", "val_fraction", "test_fraction", "max_documents")}
    if man and all(man.get("settings", {}).get(k) == v for k, v in want.items()) \
            and man.get("settings", {}).get("seed") == seed:
        sp = man["splits"]
        return TextData(name, sp["train"]["n_documents"], sp["train"]["n_tokens"], sp["val"]["n_tokens"],
                        sp["test"]["n_tokens"], sum(s["n_chars"] for s in sp.values()),
                        f"manifest {results / 'data' / name / 'manifest.json'}")
    fig = TEXT_FIGURES[name]
    docs = fig["documents"]
    if fig["test_documents"] is not None:  # a separate test file (TinyStories' valid)
        test_docs, rest = fig["test_documents"], docs
    else:
        test_docs, rest = round(docs * text_cfg["test_fraction"]), docs - round(docs * text_cfg["test_fraction"])
    if text_cfg.get("max_documents"):
        scale = min(1.0, text_cfg["max_documents"] / (rest + test_docs))
        rest, test_docs = round(rest * scale), round(test_docs * scale)
    val_docs = round(rest * text_cfg["val_fraction"])
    train_docs = rest - val_docs
    per_doc = fig["chars_per_document"] / fig["chars_per_token"]
    note = fig["note"]
    if text_cfg["vocab_size"] != fig["at_vocab"]:
        note += f"; chars/token measured at vocab {fig['at_vocab']}, config asks {text_cfg['vocab_size']}"
    return TextData(name, train_docs, round(train_docs * per_doc), round(val_docs * per_doc),
                    round(test_docs * per_doc), round((train_docs + val_docs + test_docs) * fig["chars_per_document"]),
                    f"figures: {note}")


@dataclass
class ImageData:
    name: str
    n_train: int
    n_test: int
    shape: tuple[int, int, int]
    source: str

    @property
    def pixels(self) -> int:
        c, h, w = self.shape
        return c * h * w


def image_data(name: str, images_cfg: dict, results: Path) -> ImageData:
    fig = IMAGE_FIGURES[name]
    src = images_cfg["mnist_source"] if name == "mnist" else "official"
    man = _manifest(results, name)
    settings = (man or {}).get("settings", {})
    if man and settings.get("source") == src and settings.get("max_train") == images_cfg.get("max_train") \
            and "splits" in man:
        sp = man["splits"]
        return ImageData(name, int(sp["train"]["n_images"]), int(sp["test"]["n_images"]),
                         tuple(man.get("shape", fig["shape"])),
                         f"manifest {results / 'data' / name / 'manifest.json'}")
    if src == "test-file":
        n = 10_000
        n_test = round(n * images_cfg["test_fraction"])
        n_train = n - n_test
    else:
        n_train, n_test = fig["official"]
    if images_cfg.get("max_train"):
        n_train = min(n_train, images_cfg["max_train"])
    return ImageData(name, n_train, n_test, fig["shape"], f"figures: {name} {src}")


def image_raw_bytes(name: str, images_cfg: dict) -> int:
    src = images_cfg["mnist_source"] if name == "mnist" else "official"
    return IMAGE_FIGURES[name]["raw_bytes"][src]


@dataclass
class MoleculeData:
    n_train_conformers: int
    n_test_molecules: int
    n_test_conformers: int
    padded_atoms: float
    source: str
    n_train_molecules: int = 0
    mean_atoms: float = 0.0


def molecule_data(conf_cfg: dict, results: Path) -> MoleculeData:
    src = conf_cfg["source"]
    prep = conf_cfg["geom"] if src == "geom" else conf_cfg["prepare"]
    fig = MOLECULE_FIGURES[src]
    folder = "conformers-geom" if src == "geom" else "conformers"
    man = _manifest(results, folder)
    if man and "train" in man and man["train"].get("n_molecules"):
        tr, te = man["train"], man["test"]
        mean_atoms = tr["n_atoms"] / tr["n_molecules"]
        return MoleculeData(tr["n_conformers"], te["n_molecules"], te["n_conformers"],
                            min(prep["max_heavy_atoms"], mean_atoms * fig["pad"]),
                            f"manifest {results / 'data' / folder / 'manifest.json'}", tr["n_molecules"], mean_atoms)
    k = prep["conformers_per_molecule"]
    per_test = fig["conformers_per_test_molecule"] or k
    if src == "geom":
        per_test = min(per_test, prep.get("max_test_conformers", per_test))
    return MoleculeData(prep["n_train_molecules"] * k, prep["n_test_molecules"],
                        prep["n_test_molecules"] * per_test,
                        min(prep["max_heavy_atoms"], fig["mean_heavy_atoms"] * fig["pad"]),
                        f"figures: {src} ({fig['mean_heavy_atoms']} heavy atoms, batch padding x{fig['pad']})",
                        prep["n_train_molecules"], fig["mean_heavy_atoms"])
