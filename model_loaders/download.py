"""Downloading official model files safely.

A download streams into ``<name>.part`` beside the final file, checks the byte count against the
server's ``Content-Length`` (and a known SHA-256 when the catalog has one), checks the file reads
as a checkpoint, then renames it atomically. A half file never sits under the final name, and an
existing good file is never overwritten. The SHA-256 of each downloaded file is recorded in
``<name>.sha256`` and verified by :func:`~facemend.model_loaders.reading.read_checkpoint` on later loads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from .catalog import KnownModel, find_known
from .errors import UnsupportedModelError
from .reading import digest_path, read_checkpoint

log = logging.getLogger("facemend")

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed; the message names the file, the URL and what to do."""


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
        DownloadError: HTTP errors, truncated transfers, digest mismatch, unreadable content.
    """
    if Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"invalid model file name {name!r}")
    if dest_dir is None:
        from ..runtime import download_dir

        dest_dir = download_dir(kind)
    dest_dir = Path(dest_dir)
    final = dest_dir / name
    if final.exists():
        try:
            read_checkpoint(final)
        except UnsupportedModelError as e:
            raise DownloadError(
                f"{final} already exists but is not a usable checkpoint ({e}). Delete it to download it again."
            ) from None
        log.info("FaceMend: %s already present; not downloading", final)
        return final
    dest_dir.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    try:
        digest = _fetch(url, part, timeout)
        if sha256 and digest != sha256.lower():
            raise DownloadError(f"{name}: downloaded file has SHA-256 {digest}, expected {sha256}. Try again later.")
        try:
            read_checkpoint(part, fmt=final.suffix, verify=False)
        except UnsupportedModelError as e:
            raise DownloadError(f"{name}: the downloaded file from {url} is not a usable checkpoint ({e}).") from None
        if final.exists():  # another process finished first: keep theirs
            return final
        os.replace(part, final)
        digest_path(final).write_text(f"{digest}  {name}\n")
    finally:
        if part.exists():
            part.unlink()
    log.info("FaceMend: downloaded %s (sha256 %s)", final, digest)
    return final


def _fetch(url: str, part: Path, timeout: float) -> str:
    """Stream ``url`` into ``part``; return the hex SHA-256. Raises :class:`DownloadError`."""
    from ..runtime import Progress

    req = urllib.request.Request(url, headers={"User-Agent": "comfyui-facemend"})
    h = hashlib.sha256()
    received = 0
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
        raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}. Check the URL or download it by hand.") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"could not download {url}: {reason}. Check your internet connection or download it by hand.") from None
    if expected and received != expected:
        raise DownloadError(f"download of {url} was cut off: got {received} of {expected} bytes. Try again.")
    if received == 0:
        raise DownloadError(f"download of {url} returned no data.")
    return h.hexdigest()


def ensure_known_model(name: str, kind: str | None = None) -> Path:
    """Find ``name`` in its model folder, downloading it from the catalog when missing.

    Raises:
        FileNotFoundError: not present and not downloadable (message says where to get it).
    """
    from ..runtime import find_model

    known: KnownModel | None = find_known(name)
    kind = kind or (known.kind if known else "facerestore_models")
    path = find_model(kind, name)
    if path is not None:
        return path
    if known is None:
        raise FileNotFoundError(f"model {name!r} is not in the {kind} folder and is not a known download.")
    if known.url is None:
        raise FileNotFoundError(
            f"model {name!r} is not in the {kind} folder and can only be downloaded by hand from {known.page}; "
            f"put it in the {kind} folder."
        )
    return download_model(name, kind, known.url, sha256=known.sha256)
