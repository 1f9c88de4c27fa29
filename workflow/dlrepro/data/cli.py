"""``python -m dlrepro data``: download, prepare-text, prepare-images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlrepro.cliutil import parse_params
from dlrepro.data import registry
from dlrepro.data.download import fetch_file
from dlrepro.data.text import DataError
from dlrepro.errors import UserError


def _sources(dataset: str, raw_dir: Path, subset: str) -> dict[str, Path]:
    files = registry.files_for(dataset, subset)
    paths = {f.name: Path(raw_dir) / f.name for f in files}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(f"{dataset}: raw files missing: {missing}")
    return paths


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m dlrepro data", description="Obtain the public data sets (checksum-verified, from the network or the offline mirror) and prepare them for the stages.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("download", help="obtain one upstream file, verified")
    d.add_argument("--dataset", required=True, choices=sorted(registry.DATASETS))
    d.add_argument("--file", required=True)
    d.add_argument("--out", required=True, type=Path)
    d.add_argument(
        "--mirror", default=None, help="mirror folder (<data set>/<file>); default $DLREPRO_DATA_MIRROR"
    )
    d.add_argument("--no-network", action="store_true")
    d.add_argument("--retries", type=int, default=3)
    d.add_argument("--timeout", type=float, default=60.0)

    t = sub.add_parser("prepare-text", help="split, train the tokenizer, write token arrays")
    t.add_argument("--dataset", required=True)
    t.add_argument("--raw-dir", required=True, type=Path)
    t.add_argument("--params", required=True, help="JSON: data.text settings plus seed")
    t.add_argument("--out-dir", required=True, type=Path)

    i = sub.add_parser("prepare-images", help="normalised image arrays with fixed splits")
    i.add_argument("--dataset", required=True)
    i.add_argument("--raw-dir", required=True, type=Path)
    i.add_argument("--params", required=True, help="JSON: source, test_fraction, max_train, seed")
    i.add_argument("--out-dir", required=True, type=Path)

    args = ap.parse_args(argv)
    try:
        if args.cmd == "download":
            fetch_file(
                args.dataset,
                args.file,
                args.out,
                mirror=args.mirror or None,
                allow_network=not args.no_network,
                retries=args.retries,
                timeout_s=args.timeout,
            )
        elif args.cmd == "prepare-text":
            from dlrepro.data.text import TextSettings, prepare_text

            ds = registry.get(args.dataset)
            if ds.kind != "text":
                raise DataError(f"{args.dataset!r} is a {ds.kind} data set, not text")
            settings = parse_params(args.params, TextSettings)
            test_source = next((f.name for f in ds.files if "valid" in f.name), None)
            prepare_text(
                args.dataset,
                _sources(args.dataset, args.raw_dir, "all"),
                settings,
                args.out_dir,
                separator=ds.doc_separator,
                test_source=test_source,
            )
        elif args.cmd == "prepare-images":
            from dlrepro.data.images import ImageSettings, prepare_images

            settings = parse_params(args.params, ImageSettings).for_dataset(args.dataset)
            subset = "test-only" if settings.source == "test-file" else "all"
            prepare_images(args.dataset, _sources(args.dataset, args.raw_dir, subset), settings, args.out_dir)
    except UserError as exc:  # DownloadError, DataError, unknown names, --params
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
