"""Verifying downloads with a local mirror in place of the network.

Each file is streamed to a temporary file next to its destination while it is hashed;
only a file whose checksums match the registry is renamed into place. A failed or
mismatching download leaves nothing behind and says which source and which checksum.

Sources, in order: the mirror (``<mirror>/<data set>/<upstream file name>``), then the
upstream URLs (unless the network is disallowed). A mirror file that exists but does not
match is an error, not a reason to go to the network: a corrupt mirror should be fixed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from dlrepro.data.registry import RemoteFile, get
from dlrepro.errors import InputFileError
from dlrepro.log import get_logger

MIRROR_ENV = "DLREPRO_DATA_MIRROR"
CHUNK = 1 << 20


class DownloadError(InputFileError, RuntimeError):
    """A file could not be obtained or did not match its checksum (a user's error: the mirror,
    the network or the file given; reported in one line)."""


@dataclass
class Fetched:
    path: Path
    source: str
    sha256: str
    md5: str
    size: int


def resolve_mirror(mirror: str | os.PathLike | None) -> Path | None:
    """The mirror folder: the config value, else ``$DLREPRO_DATA_MIRROR``, else none."""
    value = mirror if mirror not in (None, "") else os.environ.get(MIRROR_ENV) or None
    return Path(value).expanduser().resolve() if value else None


LFS_POINTER_SUFFIX = ".lfs-pointer"


def lfs_pointer_path(mirror_dir: Path | None, dataset: str, filename: str) -> Path | None:
    """Where a mirror keeps the Git LFS pointer of a file whose checksum upstream publishes
    that way (``<mirror>/<data set>/<file>.lfs-pointer``): offline, the file is verified
    against it."""
    return mirror_dir / dataset / (filename + LFS_POINTER_SUFFIX) if mirror_dir else None


def mirror_place(dataset: str, filename: str, mirror_dir: Path | None) -> str:
    """Where a file goes in the mirror, said to a user who has to put it there."""
    where = mirror_dir / dataset / filename if mirror_dir else f"<mirror>/{dataset}/{filename}"
    return f"{where} (a mirror is config data.mirror or ${MIRROR_ENV})"


def _open_url(url: str, timeout: float) -> BinaryIO:
    req = urllib.request.Request(url, headers={"User-Agent": "dlrepro-downloader/0.1"})
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (https/http URLs from the registry)


def lfs_pointer_sha256(url: str, timeout: float = 60, opener: Callable = _open_url) -> str:
    """Read the ``oid sha256:<hex>`` line of a Git LFS pointer file."""
    with opener(url, timeout) as resp:
        text = resp.read(4096).decode("utf-8", "replace")
    for line in text.splitlines():
        if line.startswith("oid sha256:"):
            return line.split(":", 1)[1].strip()
    raise DownloadError(f"{url} is not a Git LFS pointer (no 'oid sha256:' line)")


def _copy_hashing(src: BinaryIO, dst: BinaryIO) -> tuple[str, str, int]:
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    for block in iter(lambda: src.read(CHUNK), b""):
        sha.update(block)
        md5.update(block)
        dst.write(block)
        size += len(block)
    return sha.hexdigest(), md5.hexdigest(), size


def _mismatch(rf: RemoteFile, expected_sha: str | None, sha: str, md5: str) -> str | None:
    if expected_sha and sha != expected_sha:
        return f"sha256 {sha} != expected {expected_sha}"
    if rf.md5 and md5 != rf.md5:
        return f"md5 {md5} != expected {rf.md5}"
    return None


def fetch_file(
    dataset: str,
    filename: str,
    dest: str | os.PathLike,
    *,
    mirror: str | os.PathLike | None = None,
    allow_network: bool = True,
    retries: int = 3,
    timeout_s: float = 60.0,
    opener: Callable = _open_url,
) -> Fetched:
    """Obtain ``filename`` of ``dataset`` at ``dest``, verified against the registry."""
    rf = get(dataset).file(filename)
    log = get_logger("data", dataset=dataset, file=filename)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    mirror_dir = resolve_mirror(mirror)
    mirror_path = mirror_dir / dataset / filename if mirror_dir else None

    in_mirror = mirror_path is not None and mirror_path.is_file()
    put_it = f"download {rf.urls[0]} and put it at {mirror_place(dataset, filename, mirror_dir)}"
    if not in_mirror and not allow_network:
        where = (
            f"the mirror has no {mirror_path}"
            if mirror_path
            else f"no mirror is set (config data.mirror or ${MIRROR_ENV})"
        )
        raise DownloadError(
            f"cannot obtain {dataset}/{filename}: {where} and the network is disallowed "
            f"(data.allow_network: false); {put_it}"
        )

    expected_sha = rf.sha256
    pointer = lfs_pointer_path(mirror_dir, dataset, filename)
    if expected_sha is None and rf.lfs_pointer_url and pointer is not None and pointer.is_file():
        expected_sha = lfs_pointer_sha256(str(pointer), opener=lambda path, timeout: open(path, "rb"))
        log.info("expected sha256 %s (from the LFS pointer %s)", expected_sha, pointer)
    elif expected_sha is None and rf.lfs_pointer_url:
        if not allow_network:
            raise DownloadError(
                f"{dataset}/{filename}: its checksum is published as a Git LFS pointer at "
                f"{rf.lfs_pointer_url}, which needs the network (data.allow_network is false); "
                f"offline, download that pointer file and put it at "
                f"{pointer or '<mirror>/' + dataset + '/' + filename + LFS_POINTER_SUFFIX}"
            )
        try:
            expected_sha = lfs_pointer_sha256(rf.lfs_pointer_url, timeout_s, opener)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            have = f"the mirror has {mirror_path}, but " if in_mirror else ""
            raise DownloadError(
                f"cannot verify {dataset}/{filename}: {have}its expected sha256 is published in the "
                f"Git LFS pointer {rf.lfs_pointer_url}, which could not be read ({_reason(exc)})"
                + ("" if in_mirror else f"; {put_it}")
            ) from None
        log.info("expected sha256 %s (from the LFS pointer)", expected_sha)

    sources: list[tuple[str, Callable[[], BinaryIO]]] = []
    if in_mirror:
        sources.append((str(mirror_path), lambda: open(mirror_path, "rb")))
    if allow_network:
        for url in rf.urls:
            sources.append((url, lambda url=url: opener(url, timeout_s)))

    failures: list[str] = []
    for source, open_source in sources:
        is_mirror = mirror_path is not None and source == str(mirror_path)
        attempts = 1 if is_mirror else max(1, retries)
        for attempt in range(1, attempts + 1):
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            tmp_path = Path(tmp)
            try:
                log.info("fetching from %s (attempt %d/%d)", source, attempt, attempts)
                with os.fdopen(fd, "wb") as out, open_source() as src:
                    sha, md5, size = _copy_hashing(src, out)
                    out.flush()
                    os.fsync(out.fileno())
                bad = _mismatch(rf, expected_sha, sha, md5)
                if bad:
                    tmp_path.unlink(missing_ok=True)
                    msg = f"checksum mismatch for {dataset}/{filename} from {source}: {bad}"
                    if is_mirror:
                        raise DownloadError(
                            msg + f" (the mirror file is corrupt or wrong; replace it with {rf.urls[0]})"
                        )
                    failures.append(msg)
                    break  # a wrong file will not get right by retrying this URL
                os.replace(tmp_path, dest)
                log.info("verified %s (%d bytes, sha256 %s)", dest, size, sha)
                return Fetched(dest, source, sha, md5, size)
            except DownloadError:
                tmp_path.unlink(missing_ok=True)
                raise
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                tmp_path.unlink(missing_ok=True)
                failures.append(f"{source}: {_reason(exc)}")
                if attempt < attempts:
                    time.sleep(min(30.0, 2.0**attempt))
            except BaseException:
                tmp_path.unlink(missing_ok=True)
                raise
    # the remedy first, then what was tried (a network error per attempt can be long)
    hint = f"download {rf.urls[0]} and put it at {mirror_path}" if mirror_path else put_it
    tried = "; ".join(dict.fromkeys(f[:320] for f in failures))  # a checksum line is ~260
    raise DownloadError(f"could not obtain {dataset}/{filename}: {hint} (tried: {tried})")


def _reason(exc: BaseException) -> str:
    """The cause of a network error in a few words (``URLError`` wraps it in ``.reason``)."""
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc) or type(exc).__name__
