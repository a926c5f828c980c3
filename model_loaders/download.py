"""Downloading official model files safely.

A download streams into ``<name>.part`` beside the final file, checks the byte count against the
server's ``Content-Length`` (and a known SHA-256 when the catalog has one), checks the file reads
as a checkpoint, then renames it atomically. A half file never sits under the final name, and an
existing good file is never overwritten. The SHA-256 of each downloaded file is recorded in
``<name>.sha256`` and verified by :func:`~facemend.model_loaders.reading.read_checkpoint` on later loads.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from .catalog import KnownModel, find_known
from .errors import UnsupportedModelError, quote_library_text
from .reading import digest_path, read_checkpoint

log = logging.getLogger("facemend")

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed; the message names the file, the URL, the folder it belongs in and what to do.

    Attributes:
        name: the model file name (``None`` when the failure is not about one file).
        url: where it was fetched from.
        folder: the model folder it belongs in (a real path on disk).
    """

    def __init__(self, message: str, name: str | None = None, url: str | None = None, folder: Path | None = None) -> None:
        super().__init__(message)
        self.name, self.url, self.folder = name, url, folder


def by_hand(url: str, folder: Path, name: str) -> str:
    """The advice that ends every download error: where to put the file when fetching it yourself."""
    return f"download {url} by hand into {folder / name}"


def download_model(name: str, kind: str, url: str, dest_dir: Path | None = None, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``<dest_dir>/<name>`` (default: the first folder of ``kind``).

    Args:
        name: final file name (an official file name; no directories).
        kind: model folder kind (``facerestore_models``, ``facedetection``, ``refusion``).
        url: where to fetch it from (``http(s)://``).
        dest_dir: target directory; default :func:`facemend.runtime.download_dir`.
        sha256: expected hex digest, if known.
        timeout: socket timeout in seconds.

    Returns:
        Path of the final file. If it already exists and reads as a checkpoint, it is returned
        untouched (never overwritten).

    Raises:
        DownloadError: HTTP errors, connection errors, truncated transfers, digest mismatch,
            unreadable content. The message names the file, the model folder (its real path)
            and says ``download <url> by hand into <folder>/<name>``.
    """
    if Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"invalid model file name {name!r}")
    if dest_dir is None:
        from ..runtime import download_dir

        dest_dir = download_dir(kind)
    dest_dir = Path(dest_dir).absolute()
    final = dest_dir / name
    hand = by_hand(url, dest_dir, name)
    if final.exists():
        try:
            read_checkpoint(final)
        except UnsupportedModelError as e:
            raise DownloadError(
                f"{final} already exists but is not a usable checkpoint ({e}). Delete it to download it again, "
                f"or {hand}.", name, url, dest_dir,
            ) from None
        log.info("FaceMend: %s already present; not downloading", final)
        return final
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(
            f"could not download {name}: its {kind} model folder {dest_dir} cannot be created "
            f"({quote_library_text(str(e), 160)}). Check the folder's permissions, or {hand}.", name, url, dest_dir,
        ) from None
    part = final.with_name(final.name + ".part")
    try:
        try:
            digest = _fetch(url, part, timeout)
        except _FetchFailed as e:
            raise DownloadError(
                f"could not download {name} into the {kind} model folder {dest_dir}: {e.reason}. {e.advice}, or {hand}.",
                name, url, dest_dir,
            ) from None
        if sha256 and digest != sha256.lower():
            raise DownloadError(
                f"could not download {name} into the {kind} model folder {dest_dir}: the file from {url} has SHA-256 "
                f"{digest[:16]}..., not the official {sha256[:16]}.... Try again later, or {hand}.", name, url, dest_dir,
            )
        try:
            read_checkpoint(part, fmt=final.suffix, verify=False)
        except UnsupportedModelError as e:
            raise DownloadError(
                f"could not download {name} into the {kind} model folder {dest_dir}: what {url} sent is not a usable "
                f"checkpoint ({str(e).replace(str(part), 'the download')}). Try again later, or {hand}.", name, url, dest_dir,
            ) from None
        if final.exists():  # another process finished first: keep theirs
            return final
        os.replace(part, final)
        digest_path(final).write_text(f"{digest}  {name}\n")
    finally:
        if part.exists():
            part.unlink()
    log.info("FaceMend: downloaded %s (sha256 %s)", final, digest)
    return final


class _FetchFailed(Exception):
    """Why a transfer failed (``reason``) and the first thing to try (``advice``)."""

    def __init__(self, reason: str, advice: str) -> None:
        super().__init__(reason)
        self.reason, self.advice = reason, advice


def _fetch(url: str, part: Path, timeout: float) -> str:
    """Stream ``url`` into ``part``; return the hex SHA-256. Raises :class:`_FetchFailed`."""
    from ..runtime import Progress

    req = urllib.request.Request(url, headers={"User-Agent": "comfyui-facemend"})
    h = hashlib.sha256()
    received = 0
    expected = 0
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(part, "wb") as f:
            expected = int(resp.headers.get("Content-Length") or 0)
            progress = Progress(max(expected // CHUNK, 1), desc=f"download {part.stem}") if expected else None
            while block := resp.read(CHUNK):
                f.write(block)
                h.update(block)
                received += len(block)
                if progress is not None:
                    progress.update(1)
            if progress is not None:
                progress.close()
    except urllib.error.HTTPError as e:
        raise _FetchFailed(f"the server answered HTTP {e.code} {quote_library_text(str(e.reason), 80)}",
                           "Check the URL (the file may have moved)") from None
    except http.client.IncompleteRead as e:
        raise _FetchFailed(f"the download was cut off after {received + len(e.partial)} bytes",
                           "Try again") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, http.client.HTTPException) as e:
        reason = quote_library_text(str(getattr(e, "reason", e)) or type(e).__name__, 160)
        raise _FetchFailed(f"no connection to the server ({reason})", "Check your internet connection") from None
    if expected and received != expected:
        raise _FetchFailed(f"the download was cut off: got {received} of {expected} bytes", "Try again")
    if received == 0:
        raise _FetchFailed("the server sent no data", "Try again later")
    return h.hexdigest()


class MissingModelsError(FileNotFoundError):
    """Model files that are not on disk and could not be downloaded, all of them at once.

    Attributes:
        problems: one message per file (what is missing, where it belongs, what to do).
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        head = "1 model file is missing" if len(self.problems) == 1 else f"{len(self.problems)} model files are missing"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


def missing_message(name: str, kind: str, known: KnownModel | None) -> str | None:
    """Why ``name`` cannot be fetched automatically and what to do, or ``None`` when it can be."""
    from ..runtime import download_dir

    folder = download_dir(kind).absolute()
    if known is None:
        return (
            f"{name}: not in the {kind} model folder {folder} and not an official file FaceMend can download. "
            f"Put the file at {folder / name}, or give the path of the checkpoint."
        )
    if known.url is None:
        return (
            f"{name}: not in the {kind} model folder {folder}; it is published only as a manual download. "
            f"Download it by hand from {known.page} into {folder / name}."
        )
    return None


def ensure_models(needed: Sequence[tuple[str, str | None]]) -> list[Path]:
    """Find every ``(name, kind)`` in its model folder, downloading the official ones that are missing.

    Every file is checked first; downloads start only when all the missing files can be
    downloaded, and every download is tried even when an earlier one fails, so one error lists
    every file that is still missing.

    Args:
        needed: ``(file name, folder kind)`` pairs; a kind of ``None`` means the catalog's kind
            (``facerestore_models`` for unknown names).

    Returns:
        The paths, in the order of ``needed``.

    Raises:
        MissingModelsError: one or more files are not there afterwards (each with what to do).
    """
    from ..runtime import download_dir, find_model

    found: list[Path | None] = []
    problems: list[str] = []
    to_fetch: list[tuple[int, str, str, KnownModel]] = []
    for i, (name, kind) in enumerate(needed):
        known = find_known(name)
        kind = kind or (known.kind if known else "facerestore_models")
        try:
            path = find_model(kind, name)
        except ValueError as e:  # a path-like name that is not a file
            problems.append(f"{name}: no such checkpoint file ({e}). Check the path.")
            found.append(None)
            continue
        found.append(path)
        if path is not None:
            continue
        why = missing_message(name, kind, known)
        if why is not None or known is None:
            problems.append(why or name)
        else:
            to_fetch.append((i, name, kind, known))
    if problems:  # something cannot be fetched at all: say what, and what the rest would need
        for _, name, kind, known in to_fetch:
            folder = download_dir(kind).absolute()
            problems.append(
                f"{name}: not in the {kind} model folder {folder} yet; FaceMend downloads it from {known.url} once "
                f"the files above are in place (or {by_hand(known.url or '', folder, name)})."
            )
        raise MissingModelsError(problems)
    for i, name, kind, known in to_fetch:
        try:
            found[i] = download_model(name, kind, known.url or "", sha256=known.sha256)
        except DownloadError as e:
            problems.append(str(e))
    if problems:
        raise MissingModelsError(problems)
    return [p for p in found if p is not None]


def directory_under_name(kind: str, name: str) -> Path | None:
    """A directory sitting in a model folder of ``kind`` under the model name ``name`` (which
    :func:`~facemend.runtime.find_model` skips, as it looks for files), else ``None``."""
    from ..runtime import folder_paths_for

    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or not name.strip():
        return None
    return next((d / rel for d in folder_paths_for(kind) if (d / rel).is_dir()), None)


def ensure_known_model(name: str, kind: str | None = None) -> Path:
    """Find ``name`` in its model folder, downloading it from the catalog when missing.

    Raises:
        FileNotFoundError: not present and not downloadable (message says where to put it).
        DownloadError: the download failed (message says where to put it by hand).
    """
    from ..runtime import find_model

    known: KnownModel | None = find_known(name)
    kind = kind or (known.kind if known else "facerestore_models")
    path = find_model(kind, name)
    if path is not None:
        return path
    folder_in_the_way = directory_under_name(kind, name)
    if folder_in_the_way is not None:
        read_checkpoint(folder_in_the_way)  # raises: "<path>: is a directory, not a checkpoint file..."
    why = missing_message(name, kind, known)
    if why is not None:
        raise FileNotFoundError(why)
    assert known is not None and known.url is not None
    return download_model(name, kind, known.url, sha256=known.sha256)
