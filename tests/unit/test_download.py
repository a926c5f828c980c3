"""Downloads against a local HTTP server started by the test (no internet)."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from facemend.model_loaders import DownloadError, download_model, read_checkpoint
from facemend.model_loaders.errors import UnsupportedModelError
from fm_testing.tiny_arch import tiny_state_dict


def _payload() -> bytes:
    buf = io.BytesIO()
    torch.save({"params_ema": tiny_state_dict(channels=8)}, buf)
    return buf.getvalue()


PAYLOAD = _payload()


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.hits.append(self.path)
        if self.path == "/good.pth":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/truncated.pth":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.close_connection = True
        elif self.path == "/html.pth":
            body = b"<html>rate limited</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404, "Not Found")


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.hits = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_good_records_sha_and_never_overwrites(server: str, tmp_path: Path) -> None:
    path = download_model("m.pth", "facerestore_models", f"{server}/good.pth", dest_dir=tmp_path)
    assert path == tmp_path / "m.pth" and path.read_bytes() == PAYLOAD
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert (tmp_path / "m.pth.sha256").read_text().split()[0] == digest
    assert not list(tmp_path.glob("*.part"))
    assert "params_ema" not in read_checkpoint(path)  # loads (unwrapped)
    mtime = path.stat().st_mtime_ns
    again = download_model("m.pth", "facerestore_models", f"{server}/good.pth", dest_dir=tmp_path)
    assert again == path and path.stat().st_mtime_ns == mtime
    assert _Handler.hits == ["/good.pth"]  # the second call did not touch the network


def test_expected_sha_mismatch(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="SHA-256"):
        download_model("m.pth", "facerestore_models", f"{server}/good.pth", dest_dir=tmp_path, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def _says_where(e: DownloadError, name: str, url: str, folder: Path) -> None:
    """A download error names the file, the model folder's real path and how to fetch it by hand."""
    msg = str(e)
    assert msg.startswith(f"could not download {name} into the facerestore_models model folder {folder}: "), msg
    assert msg.endswith(f"download {url} by hand into {folder / name}."), msg
    assert e.name == name and e.url == url and e.folder == folder


def test_truncated_response_leaves_nothing(server: str, tmp_path: Path) -> None:
    url = f"{server}/truncated.pth"
    with pytest.raises(DownloadError, match="cut off") as info:
        download_model("t.pth", "facerestore_models", url, dest_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    _says_where(info.value, "t.pth", url, tmp_path)


def test_404(server: str, tmp_path: Path) -> None:
    url = f"{server}/missing.pth"
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download_model("x.pth", "facerestore_models", url, dest_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    _says_where(info.value, "x.pth", url, tmp_path)


def test_non_checkpoint_content_refused(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="not a usable checkpoint"):
        download_model("h.pth", "facerestore_models", f"{server}/html.pth", dest_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_bad_existing_file(server: str, tmp_path: Path) -> None:
    (tmp_path / "m.pth").write_bytes(b"garbage")
    with pytest.raises(DownloadError, match="already exists"):
        download_model("m.pth", "facerestore_models", f"{server}/good.pth", dest_dir=tmp_path)
    assert (tmp_path / "m.pth").read_bytes() == b"garbage"


def test_recorded_sha_verified_on_later_loads(server: str, tmp_path: Path) -> None:
    path = download_model("m.pth", "facerestore_models", f"{server}/good.pth", dest_dir=tmp_path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip a byte in place
    path.write_bytes(bytes(data))
    with pytest.raises(UnsupportedModelError, match="differs from the"):
        read_checkpoint(path)


def test_unreachable_host(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/none.pth"
    with pytest.raises(DownloadError, match="could not download.*internet connection") as info:
        download_model("m.pth", "facerestore_models", url, dest_dir=tmp_path, timeout=5)
    _says_where(info.value, "m.pth", url, tmp_path)


def test_default_folder_is_the_kinds_real_folder(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEMEND_MODELS_DIR", str(tmp_path / "models"))
    url = f"{server}/missing.pth"
    with pytest.raises(DownloadError) as info:
        download_model("GFPGANv1.4.pth", "facerestore_models", url)
    _says_where(info.value, "GFPGANv1.4.pth", url, tmp_path / "models" / "facerestore_models")


def test_ensure_models_tries_every_download_and_lists_every_failure(server: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from facemend.model_loaders import download as download_mod
    from facemend.model_loaders.catalog import KnownModel
    from facemend.model_loaders.download import MissingModelsError, ensure_models

    monkeypatch.setenv("FACEMEND_MODELS_DIR", str(tmp_path))
    catalog = {
        "a.pth": KnownModel("a.pth", "facerestore_models", "x", "MIT", f"{server}/missing.pth"),
        "det.pth": KnownModel("det.pth", "facedetection", "y", "MIT", f"{server}/truncated.pth"),
        "ok.pth": KnownModel("ok.pth", "facedetection", "y", "MIT", f"{server}/good.pth"),
        "manual.pth": KnownModel("manual.pth", "facerestore_models", "z", "MIT", None, "https://example.org/page"),
    }
    monkeypatch.setattr(download_mod, "find_known", catalog.get)
    with pytest.raises(MissingModelsError) as info:
        ensure_models([("a.pth", None), ("det.pth", None), ("ok.pth", None)])
    assert len(info.value.problems) == 2  # both failures at once, not the first one only
    text = str(info.value)
    assert text.startswith("2 model files are missing:")
    assert f"by hand into {tmp_path / 'facerestore_models' / 'a.pth'}" in text and "HTTP 404" in text
    assert f"by hand into {tmp_path / 'facedetection' / 'det.pth'}" in text and "cut off" in text
    assert (tmp_path / "facedetection" / "ok.pth").is_file()  # the good one was still fetched
    _Handler.hits = []
    # a file that cannot be downloaded at all: nothing is fetched, everything missing is listed
    with pytest.raises(MissingModelsError) as info:
        ensure_models([("manual.pth", None), ("a.pth", None), ("unknown.pth", "facerestore_models")])
    assert _Handler.hits == []
    text = str(info.value)
    assert len(info.value.problems) == 3 and "https://example.org/page" in text and "unknown.pth" in text
    assert f"{server}/missing.pth" in text
    assert ensure_models([("ok.pth", None)]) == [tmp_path / "facedetection" / "ok.pth"]


def test_invalid_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        download_model("../evil.pth", "facerestore_models", "http://127.0.0.1:9/x", dest_dir=tmp_path)
