"""Progress reporting: ComfyUI's ProgressBar inside ComfyUI, tqdm outside."""

from __future__ import annotations

from typing import Any

from .comfy import comfy_module


class Progress:
    """A counter from 0 to ``total`` shown on the node (ComfyUI) or in the terminal (tqdm)."""

    def __init__(self, total: int, desc: str = "FaceMend") -> None:
        self.total = max(int(total), 1)
        self.done = 0
        utils = comfy_module("comfy.utils")
        self._bar: Any
        if utils is not None:
            self._bar = utils.ProgressBar(self.total)
            self._tqdm = None
        else:
            from tqdm.auto import tqdm

            self._bar = None
            self._tqdm = tqdm(total=self.total, desc=desc, leave=False, disable=None)

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` steps."""
        self.done = min(self.done + n, self.total)
        if self._bar is not None:
            self._bar.update_absolute(self.done, self.total)
        elif self._tqdm is not None:
            self._tqdm.update(n)
            if self.done >= self.total:
                self._tqdm.close()

    def extend(self, total: int) -> None:
        """Change the total (e.g. once a detection pass knows how many faces follow); ``done`` is kept."""
        self.total = max(int(total), self.done, 1)
        if self._bar is not None:
            self._bar.update_absolute(self.done, self.total)
        elif self._tqdm is not None:
            self._tqdm.total = self.total
            self._tqdm.refresh()

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
