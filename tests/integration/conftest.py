"""Live-server harness: a real ComfyUI started once per session, and a small HTTP client for it.

Runs only when ``COMFYUI_PATH`` points at a ComfyUI checkout (its ``main.py``); otherwise every
test in this folder is skipped with the reason. The server's Python is ``$COMFYUI_PYTHON`` (a venv
with ComfyUI's requirements) or the interpreter running pytest. See ``docs/testing.md``.

The server is isolated from the user's ComfyUI:

- ``--base-directory`` is a temporary folder: its ``custom_nodes/`` holds only this checkout
  (linked as ``comfyui-facemend``) and the test-only probe pack; input, output, temp and user
  folders are fresh; so is its database; API nodes are disabled.
- ``--extra-model-paths-config`` maps ``facerestore_models``, ``facedetection``, ``refusion`` and
  ``checkpoints`` (for the SD examples, ``COMFYUI_SD_CHECKPOINT``) to temporary folders; the
  real RetinaFace weights (``../shared/weights``) are copied into ``facedetection`` as
  ``detection_mobilenet0.25_Final.pth`` when present.

Every request goes to 127.0.0.1 on the port the server was started with; every wait has a
deadline.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
ARTIFACTS = HERE / "artifacts"
PACK_FOLDER = "comfyui-facemend"  # the custom_nodes folder name the server sees
MODEL_KINDS = ("facerestore_models", "facedetection", "refusion", "checkpoints")
RETINAFACE_FILE = "detection_mobilenet0.25_Final.pth"
FACE_IMAGE = "fm_astronaut.png"
NO_FACE_IMAGE = "fm_no_face.png"  # both written into the server's input folder
START_TIMEOUT_S = float(os.environ.get("COMFYUI_START_TIMEOUT", "240"))


def _comfyui_path() -> Path | None:
    value = os.environ.get("COMFYUI_PATH")
    return Path(value).expanduser().resolve() if value else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this folder's tests ``integration``; skip them all when no ComfyUI is configured."""
    path = _comfyui_path()
    reason = None
    if path is None:
        reason = "COMFYUI_PATH is not set: live ComfyUI tests need a ComfyUI checkout (see docs/testing.md)"
    elif not (path / "main.py").is_file():
        reason = f"COMFYUI_PATH={path} has no main.py: it must be a ComfyUI checkout"
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def _shared_weights() -> Path | None:
    for base in (REPO_ROOT, *REPO_ROOT.parents):
        cand = base / "shared" / "weights"
        if cand.is_dir():
            return cand
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PromptRejected(AssertionError):
    """``POST /prompt`` answered 400 (validation failed); ``.body`` holds ComfyUI's answer."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(json.dumps(body, indent=1)[:4000])
        self.body = body


@dataclass
class ComfyClient:
    """HTTP helpers for one live ComfyUI on 127.0.0.1 (``requests``, bounded timeouts)."""

    port: int
    client_id: str = ""

    def __post_init__(self) -> None:
        self.client_id = self.client_id or f"facemend-tests-{uuid.uuid4().hex[:8]}"
        self._object_info: dict[str, Any] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 30, **params: Any) -> Any:
        import requests

        return requests.get(self.base_url + path, params=params or None, timeout=timeout)

    def post(self, path: str, body: Any = None, timeout: float = 30) -> Any:
        import requests

        return requests.post(self.base_url + path, json=body, timeout=timeout)

    # --- node definitions -------------------------------------------------------------------
    def object_info(self, refresh: bool = False) -> dict[str, Any]:
        """``GET /object_info`` (cached; ``refresh=True`` asks again)."""
        if self._object_info is None or refresh:
            r = self.get("/object_info", timeout=120)
            r.raise_for_status()
            self._object_info = r.json()
        return self._object_info

    # --- prompts ----------------------------------------------------------------------------
    def try_queue(self, prompt: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST an API-format prompt; returns ``(status, body)`` without judging it."""
        r = self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})
        return r.status_code, r.json()

    def queue(self, prompt: dict[str, Any]) -> str:
        """POST an API-format prompt and return its id; :class:`PromptRejected` when invalid."""
        status, body = self.try_queue(prompt)
        if status != 200:
            raise PromptRejected(body)
        return str(body["prompt_id"])

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished history entry of ``prompt_id``, or ``None`` while it is pending/running."""
        r = self.get(f"/history/{prompt_id}")
        r.raise_for_status()
        entry = r.json().get(prompt_id)
        if not entry:
            return None
        status = entry.get("status") or {}
        if status.get("completed") or status.get("status_str") in ("success", "error"):
            return entry
        return None

    def wait(self, prompt_id: str, timeout: float = 180) -> dict[str, Any]:
        """Poll ``/history/{id}`` until the prompt finished (success, error or interrupted)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.history(prompt_id)
            if entry is not None:
                return entry
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")

    def run(self, prompt: dict[str, Any], timeout: float = 180) -> dict[str, Any]:
        """Queue ``prompt`` and wait for its history entry."""
        return self.wait(self.queue(prompt), timeout)

    def is_running(self, prompt_id: str) -> bool:
        r = self.get("/queue")
        r.raise_for_status()
        return any(item[1] == prompt_id for item in r.json().get("queue_running", []))

    def wait_running(self, prompt_id: str, timeout: float = 60) -> None:
        """Wait until ``prompt_id`` is the running prompt."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running(prompt_id):
                return
            if self.history(prompt_id) is not None:
                raise AssertionError(f"prompt {prompt_id} finished before it was seen running")
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} did not start within {timeout:.0f} s")

    def interrupt(self, prompt_id: str | None = None) -> None:
        """``POST /interrupt`` (only that prompt when ``prompt_id`` is given)."""
        r = self.post("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})
        r.raise_for_status()

    # --- results ----------------------------------------------------------------------------
    @staticmethod
    def succeeded(entry: dict[str, Any]) -> bool:
        return (entry.get("status") or {}).get("status_str") == "success"

    @staticmethod
    def messages(entry: dict[str, Any], event: str) -> list[dict[str, Any]]:
        """Status messages of one kind (``execution_error``, ``execution_interrupted``, ...)."""
        return [data for name, data in (entry.get("status") or {}).get("messages", []) if name == event]

    def execution_error(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """The ``execution_error`` message (node_id, node_type, exception_message, ...) or None."""
        errors = self.messages(entry, "execution_error")
        return errors[0] if errors else None

    def view(self, ref: dict[str, Any]) -> bytes:
        """Bytes of an output/temp image given its UI reference ``{filename, subfolder, type}``."""
        r = self.get("/view", filename=ref["filename"], subfolder=ref.get("subfolder", ""), type=ref.get("type", "output"))
        r.raise_for_status()
        return r.content

    def images(self, entry: dict[str, Any], node_id: str) -> list[Any]:
        """Output/preview images of ``node_id`` as ``(H, W, C)`` uint8 numpy arrays."""
        import numpy as np
        from PIL import Image

        refs = (entry.get("outputs") or {}).get(str(node_id), {}).get("images", [])
        return [np.asarray(Image.open(io.BytesIO(self.view(ref))).convert("RGB")) for ref in refs]

    def ui(self, entry: dict[str, Any], node_id: str) -> dict[str, Any]:
        """The UI payload a node sent (``text``, ``images``, ``facemend_faces``, ...)."""
        return (entry.get("outputs") or {}).get(str(node_id), {})


@dataclass
class LiveComfy:
    """A running server: its client, folders, and log."""

    client: ComfyClient
    base: Path
    models: dict[str, Path]
    input_dir: Path
    log_path: Path
    comfyui_path: Path

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no log>"


def _write_face_image(dest: Path) -> None:
    src = REPO_ROOT / "tests" / "data" / "astronaut_face_512.png"
    try:
        from PIL import Image
        from skimage import data

        Image.fromarray(data.astronaut()).save(dest)
    except ImportError:
        shutil.copyfile(src, dest)


def _write_no_face_image(dest: Path) -> None:
    """A 640x480 picture with no face in it (smooth colour gradients and a few shapes), for the
    no-face tests: a real image, not a flat one, so Detect really has to find nothing."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    img = np.stack([x / 640, y / 480, 0.5 + 0.3 * np.sin(x / 40) * np.cos(y / 50)], axis=-1)
    img[100:200, 100:300] = (0.9, 0.2, 0.1)
    img[260:420, 380:560] = (0.1, 0.3, 0.9)
    Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(dest)


def _prepare_base(base: Path) -> tuple[dict[str, Path], Path, Path]:
    custom = base / "custom_nodes"
    custom.mkdir(parents=True)
    os.symlink(REPO_ROOT, custom / PACK_FOLDER, target_is_directory=True)
    os.symlink(HERE / "probe_pack", custom / "facemend_probe", target_is_directory=True)
    import_root = base / "probe_import"
    import_root.mkdir()
    os.symlink(REPO_ROOT, import_root / "facemend", target_is_directory=True)

    models = {kind: base / "fm_models" / kind for kind in MODEL_KINDS}
    for d in models.values():
        d.mkdir(parents=True)
    weights = _shared_weights()
    if weights is not None and (weights / RETINAFACE_FILE).is_file():
        shutil.copyfile(weights / RETINAFACE_FILE, models["facedetection"] / RETINAFACE_FILE)
    yaml_path = base / "extra_model_paths.yaml"
    lines = ["facemend_tests:", f"    base_path: {json.dumps(str(base / 'fm_models'))}"]
    lines += [f"    {kind}: {kind}" for kind in MODEL_KINDS]
    yaml_path.write_text("\n".join(lines) + "\n")

    input_dir = base / "input"
    input_dir.mkdir()
    _write_face_image(input_dir / FACE_IMAGE)
    _write_no_face_image(input_dir / NO_FACE_IMAGE)
    # A fresh frontend user: skip the first-run template browser so the canvas is visible.
    user = base / "user" / "default"
    user.mkdir(parents=True)
    (user / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    return models, input_dir, import_root


@pytest.fixture(scope="session")
def live_comfy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveComfy]:
    """Start ComfyUI (see module docstring) and stop it at the end of the session."""
    comfy_path = _comfyui_path()
    assert comfy_path is not None  # collection skipped otherwise
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    base = tmp_path_factory.mktemp("comfy_base")
    models, input_dir, import_root = _prepare_base(base)
    port = _free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "comfyui-server.log"
    cmd = [
        python, str(comfy_path / "main.py"),
        "--cpu", "--listen", "127.0.0.1", "--port", str(port),
        "--base-directory", str(base),
        "--extra-model-paths-config", str(base / "extra_model_paths.yaml"),
        "--database-url", f"sqlite:///{base / 'comfyui.db'}",
        "--disable-auto-launch", "--disable-api-nodes",
    ]
    env = dict(os.environ, FACEMEND_PROBE_IMPORT_ROOT=str(import_root), PYTHONUNBUFFERED="1")
    env.pop("FACEMEND_MODELS_DIR", None)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=str(comfy_path), stdout=log, stderr=subprocess.STDOUT, env=env)
    live = LiveComfy(ComfyClient(port), base, models, input_dir, log_path, comfy_path)
    try:
        _wait_ready(proc, live)
        yield live
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _wait_ready(proc: subprocess.Popen[bytes], live: LiveComfy) -> None:
    import requests

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with code {proc.returncode} while starting:\n{live.log_tail()}")
        try:
            if live.client.get("/object_info", timeout=60).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"ComfyUI did not answer /object_info within {START_TIMEOUT_S:.0f} s:\n{live.log_tail()}")


@pytest.fixture(scope="session")
def comfy(live_comfy: LiveComfy) -> ComfyClient:
    """The live server's HTTP client."""
    return live_comfy.client


@pytest.fixture(scope="session")
def probe_model(live_comfy: LiveComfy) -> str:
    """A file in facerestore_models that is a valid safetensors file but no face-restoration model."""
    import torch
    from safetensors.torch import save_file

    name = "probe_not_a_face_model.safetensors"
    save_file({"foo.weight": torch.zeros(2, 2)}, str(live_comfy.models["facerestore_models"] / name))
    return name
