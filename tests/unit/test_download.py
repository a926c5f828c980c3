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


def test_truncated_response_leaves_nothing(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="cut off"):
        download_model("t.pth", "facerestore_models", f"{server}/truncated.pth", dest_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_404(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_model("x.pth", "facerestore_models", f"{server}/missing.pth", dest_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


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
    with pytest.raises(DownloadError, match="could not download"):
        download_model("m.pth", "facerestore_models", "http://127.0.0.1:9/none.pth", dest_dir=tmp_path, timeout=5)


def test_invalid_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        download_model("../evil.pth", "facerestore_models", "http://127.0.0.1:9/x", dest_dir=tmp_path)
