"""Small JSON routes on ComfyUI's server for the frontend extension.

``GET /facemend/model_info?kind=facerestore_models&name=<file>`` (also under ``/api/...``) answers
what a model file is, so the loader node can show the architecture and licence as soon as a file
is chosen, before anything runs::

    200 {"name", "kind", "arch", "display_name", "family", "node", "licence", "parameters",
         "controls", "input_size", "hparams"[, "status", "warning"]}
    4xx/5xx {"error": "<what is wrong and what to do>"}

A file is judged the way the loader judges it: a directory under a model's name is reported as
a directory (422, read_checkpoint's message); a file whose SHA-256 differs from its
``<file>.sha256`` download record is refused with read_checkpoint's verify message (422); a file
under an official name whose SHA-256 is not the catalog's is described with a ``warning`` (the
loader loads it: fine-tunes keep official names); an official file that is not on disk yet is
described from the catalog with the ``status`` that it will be downloaded when the workflow runs.

Only files that ComfyUI lists in the model folder of ``kind`` are ever opened: the name is checked
against that listing first, then resolved by :func:`~facemend.runtime.folders.find_model`
(which refuses absolute paths and ``..``). Files are read with ``weights_only=True`` and, where
the format allows, only their header (see :mod:`facemend.model_loaders.info`).

The request handling is the plain function :func:`model_info` so it is tested without ComfyUI;
:func:`register_routes` only wires it into ComfyUI's aiohttp server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import Any

from ..runtime import find_model, list_models
from ..runtime.comfy import comfy_module

log = logging.getLogger("facemend")

MODEL_INFO_ROUTE = "/facemend/model_info"

#: Folder kinds holding restoration models that :func:`model_info` may describe.
INFO_KINDS = ("facerestore_models", "refusion")

_MAX_NAME = 1024


def model_info(kind: str | None, name: str | None) -> tuple[int, dict[str, Any]]:
    """Answer a model-info request.

    Args:
        kind: model folder kind, one of :data:`INFO_KINDS` (``None`` means ``facerestore_models``).
        name: file name as listed by ComfyUI for that kind (relative, ``/``-separated).

    Returns:
        ``(http_status, json_body)``: 200 with the description, or an error status with
        ``{"error": message}`` (400 bad request, 404 not in the folder, 422 not a usable model,
        500 unexpected failure). Error messages name the file, never its full path on disk.
    """
    kind = kind or "facerestore_models"
    if kind == "facerestore_models" and name and name.startswith("refusion/"):
        # The loader lists files of the refusion folder as "refusion/<file>" (nodes/loaders.py).
        kind, name = "refusion", name[len("refusion/"):]
    if kind not in INFO_KINDS:
        return 400, {"error": f"unknown model kind {kind!r}; expected one of {', '.join(INFO_KINDS)}."}
    if not name or len(name) > _MAX_NAME or "\x00" in name:
        return 400, {"error": "missing or invalid model name."}
    try:
        path = find_model(kind, name)  # refuses absolute paths and '..' before touching the disk
    except ValueError as e:
        return 400, {"error": str(e)}
    from ..model_loaders.download import directory_under_name

    folder_in_the_way = directory_under_name(kind, name) if path is None else None
    if folder_in_the_way is not None:  # the loader refuses it as read_checkpoint does: say the same
        from ..model_loaders import UnsupportedModelError, read_checkpoint

        try:
            read_checkpoint(folder_in_the_way)
        except UnsupportedModelError as e:
            return 422, {"error": str(e).replace(str(folder_in_the_way), name)}
    if path is None or name not in list_models(kind):
        from ..model_loaders.catalog import find_known

        known = find_known(name)
        if path is None and known is not None and known.kind == kind and known.url:
            from ..model_loaders import default_registry
            from ..model_loaders.info import describe_spec

            spec = next((s for s in default_registry().specs if s.id == known.arch), None)
            described = describe_spec(spec, dict(known.hparams)).as_dict() if spec is not None else {"arch": known.arch}
            described.pop("parameters", None)  # not known before the file is here
            return 200, {
                "name": name, "kind": kind, **described, "licence": known.licence,
                "status": f"not downloaded yet: it will be downloaded into the {kind} folder on first run",
            }
        if path is None and known is not None and known.kind == kind:
            return 404, {
                "error": f"{name} is not in the {kind} model folder, and it is published only as a manual "
                f"download: download it by hand from {known.page} into the {kind} folder, then press R."
            }
        return 404, {
            "error": f"{name} is not in the {kind} model folder. Put the file there and refresh "
            "the node definitions (press R), or choose another file."
        }
    from ..model_loaders.reading import digest_path

    try:
        st = path.stat()
        record = digest_path(path)
        record_mtime = record.stat().st_mtime_ns if record.is_file() else None
        status, body = _cached_answer(str(path), name, st.st_size, st.st_mtime_ns, record_mtime)
    except Exception as e:  # noqa: BLE001 - an HTTP answer, never a server crash
        log.exception("FaceMend: model_info failed for %s", name)
        from ..model_loaders.errors import quote_library_text

        detail = quote_library_text(f"{type(e).__name__}: {e}".replace(str(path), name), 200)
        return 500, {"error": f"{name}: could not be inspected ({detail}). See the ComfyUI log for details."}
    return status, ({"name": name, "kind": kind, **body} if status == 200 else dict(body))


# The frontend asks again each time the file widget changes or a workflow loads; legacy pickles
# are read in full and digests are computed over the whole file, so answers are kept per (path,
# size, mtime, digest record's mtime): a changed file or record is judged again.
@functools.lru_cache(maxsize=64)
def _cached_answer(path: str, name: str, size: int, mtime_ns: int, record_mtime_ns: int | None) -> tuple[int, dict[str, Any]]:
    """Judge the file as the loader does: its recorded digest (read_checkpoint's verify), then
    what it is; a file under an official name whose digest is not the official one is described
    with a warning (the loader loads it too: fine-tunes and conversions keep official names)."""
    from ..model_loaders.catalog import find_known
    from ..model_loaders.info import inspect_checkpoint
    from ..model_loaders.reading import official_digest_mismatch, recorded_digest, recorded_digest_mismatch, sha256_of

    p = Path(path)
    known = find_known(p.name)
    official = known.sha256 if known is not None else None
    actual = sha256_of(p) if (official or recorded_digest(p)) else None
    problem = recorded_digest_mismatch(p, actual)
    if problem:
        return 422, {"error": problem.replace(path, name)}
    try:
        info = inspect_checkpoint(p).as_dict()
    except ValueError as e:  # UnsupportedModelError is a ValueError
        return 422, {"error": str(e).replace(path, name)}
    warning = official_digest_mismatch(p, official, actual) if official else None
    if warning:
        info["warning"] = info["status"] = warning.replace(path, name)
    return 200, info


def register_routes() -> bool:
    """Register FaceMend's HTTP routes on ComfyUI's ``PromptServer`` (inside ComfyUI only).

    Safe to call more than once. Returns ``True`` when the routes are (now) registered, ``False``
    outside ComfyUI or before its server exists.
    """
    server = comfy_module("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None) if server else None
    if instance is None:
        return False
    from aiohttp import web

    routes = instance.routes
    if any(getattr(r, "path", None) == MODEL_INFO_ROUTE for r in routes):
        return True

    async def handle_model_info(request: web.Request) -> web.Response:
        kind = request.query.get("kind")
        name = request.query.get("name")
        loop = asyncio.get_running_loop()
        status, body = await loop.run_in_executor(None, model_info, kind, name)
        return web.json_response(body, status=status)

    routes.get(MODEL_INFO_ROUTE)(handle_model_info)
    return True
