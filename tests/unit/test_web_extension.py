"""The frontend extension (web/*.js) without a browser: runs ``node --test tests/js``.

The JavaScript tests use a fake ``window.comfyAPI``, DOM and canvas (see
``tests/js/web_extension.test.mjs``). Skipped when Node.js (>= 18) is not installed; the browser
end-to-end test is ``tests/integration/test_browser.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"


def _node() -> str | None:
    exe = shutil.which("node") or shutil.which("nodejs")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    m = re.match(r"v(\d+)", out)
    return exe if m and int(m.group(1)) >= 18 else None


def test_javascript_unit_tests_pass() -> None:
    node = _node()
    if node is None:
        pytest.skip("Node.js >= 18 is not installed: the web extension's JS unit tests need `node --test`")
    proc = subprocess.run(
        [node, "--test", str(ROOT / "tests" / "js")], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert re.search(r"^# fail 0$", proc.stdout, re.M), proc.stdout[-3000:]


@pytest.mark.parametrize("path", sorted(WEB.rglob("*.js")), ids=lambda p: p.name)
def test_extension_uses_only_public_frontend_api(path: Path) -> None:
    """ES modules reaching ComfyUI through window.comfyAPI; no prototype patching."""
    source = path.read_text(encoding="utf-8")
    assert "window.comfyAPI" in source
    assert not re.search(r"^\s*import\s.*['\"]/?scripts/", source, re.M), "import app/api via window.comfyAPI"
    assert ".prototype." not in source, "no prototype hijacking: chain handlers on node instances"
    assert "registerExtension(" in source
