"""Seeded random weights in an official checkpoint layout.

Restoration weights cannot be downloaded here, so parity tests build a state dict from a recorded
layout (key -> shape, dumped once from the official model, stored as JSON under
``tests/golden/``) with a fixed seed. The same seed gives the same tensors on every machine
(PyTorch's CPU generator), so outputs can be compared with goldens produced by the official code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import torch

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"

Scale = Callable[[str, tuple[int, ...]], "torch.Tensor | None"]


def load_layout(name: str) -> dict[str, tuple[int, ...]]:
    """Read ``tests/golden/<name>`` (JSON ``{key: [shape...]}``, key order preserved)."""
    with open(GOLDEN_DIR / name) as f:
        return {k: tuple(v) for k, v in json.load(f).items()}


def default_tensor(key: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """A well-scaled random tensor for ``key``: fan-in-scaled weights, small biases, norms near 1.

    Keeps activations finite through deep random networks so outputs are meaningful to compare.
    """
    n = math.prod(shape) if shape else 1
    leaf = key.rsplit(".", 1)[-1]
    if len(shape) == 0:
        return torch.randn((), generator=g) * 0.1
    if leaf in ("running_var",):
        return 1.0 + 0.1 * torch.rand(shape, generator=g)
    if leaf in ("running_mean", "bias") or "bias" in leaf:
        return 0.02 * torch.randn(shape, generator=g)
    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.long)
    if len(shape) == 1:  # norm scales and other per-channel vectors
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    fan_in = n // shape[0]
    return torch.randn(shape, generator=g) / math.sqrt(max(fan_in, 1))


def seeded_state_dict(
    layout: dict[str, tuple[int, ...]],
    seed: int,
    override: Callable[[str, tuple[int, ...], torch.Generator], torch.Tensor | None] | None = None,
) -> dict[str, torch.Tensor]:
    """Deterministic state dict: keys in ``layout`` order, each drawn from one generator.

    Args:
        layout: key -> shape, in the official ``state_dict()`` order.
        seed: generator seed.
        override: optional ``(key, shape, generator) -> tensor | None``; ``None`` falls back to
            :func:`default_tensor`. Use it for arch-specific scales (e.g. StyleGAN2 equalised weights).
    """
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, shape in layout.items():
        t = override(key, shape, g) if override is not None else None
        out[key] = (t if t is not None else default_tensor(key, shape, g)).contiguous()
    return out
