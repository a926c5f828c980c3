"""A tiny architecture used to prove the registry and loader without any real restorer."""

from __future__ import annotations

import torch
from torch import nn

from facemend.model_loaders import ArchSpec


class TinyNet(nn.Module):
    """x + gain * conv(c->3)(ReLU(conv(3->c)(x))); hyper-parameter ``channels`` read from shapes."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.tiny = nn.ModuleDict({"conv_in": nn.Conv2d(3, channels, 3, padding=1), "conv_out": nn.Conv2d(channels, 3, 3, padding=1)})

    def forward(self, x: torch.Tensor, gain: float | torch.Tensor = 1.0) -> torch.Tensor:
        if isinstance(gain, torch.Tensor):  # one value per item: (n,) -> (n, 1, 1, 1)
            gain = gain.view(-1, 1, 1, 1)
        return x + gain * self.tiny["conv_out"](torch.relu(self.tiny["conv_in"](x)))


def _forward(module: nn.Module, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    return (module(x * 2 - 1, gain) + 1) / 2


TINY_SPEC = ArchSpec(
    id="tiny_test",
    family="codebook",
    display_name="Tiny test net",
    required_keys=("tiny.conv_in.weight", "tiny.conv_out.weight"),
    read_hparams=lambda sd: {"channels": sd["tiny.conv_in.weight"].shape[0]},
    build=TinyNet,
    forward=_forward,
    licence="test-only",
    input_size=None,
    controls=("gain",),
)

#: Same keys as TINY_SPEC, told apart by a shape predicate (wide = 16+ channels).
TINY_WIDE_SPEC = ArchSpec(
    id="tiny_wide",
    family="codebook",
    display_name="Tiny wide test net",
    required_keys=TINY_SPEC.required_keys,
    predicate=lambda sd: sd["tiny.conv_in.weight"].shape[0] >= 16,
    read_hparams=TINY_SPEC.read_hparams,
    build=TinyNet,
    forward=_forward,
    licence="test-only",
    input_size=None,
)


def tiny_state_dict(channels: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded TinyNet state dict in its own (official) layout."""
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in TinyNet(channels).state_dict().items()}
