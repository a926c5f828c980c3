"""Declarative node descriptions, free of ComfyUI imports.

Each FaceMend node is a subclass of :class:`NodeDef` with a schema built from :class:`In` and
:class:`Out` entries and a plain ``execute`` classmethod. ``extension/v3.py`` turns them into
ComfyUI V3 ``io.ComfyNode`` classes inside ComfyUI; tests and the CLI call ``execute`` directly and
inspect the schema without ComfyUI installed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class In:
    """One node input.

    Attributes:
        id: input name (stable: saved workflows store widget values by position and links by name).
        type: a core type (``IMAGE``, ``MASK``, ``INT``, ``FLOAT``, ``STRING``, ``BOOLEAN``, ``COMBO``)
            or one of FaceMend's own socket types (``FACEMEND_MODEL``, ``FACEMEND_DETECTOR``, ``FACEMEND_FACES``).
        tooltip: shown on hover; required, every input explains itself.
        default, min, max, step: widget settings for numbers/strings/booleans/combos.
        options: combo choices, or a zero-argument callable returning them (e.g. a model list).
        optional: an optional socket/widget.
        multiline: for STRING widgets.
        display_name: label shown instead of ``id``.
        model_kind: for COMBO inputs that list model files, their folder kind
            (``facerestore_models``/``facedetection``/``refusion``). The frontend extension then
            shows what the chosen file is (architecture, licence) as soon as it is picked.
    """

    id: str
    type: str
    tooltip: str
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    options: Sequence[str] | Callable[[], Sequence[str]] | None = None
    optional: bool = False
    multiline: bool = False
    display_name: str | None = None
    model_kind: str | None = None

    def choices(self) -> list[str]:
        """Combo options, evaluated now (callables are re-read each time the schema is built)."""
        if self.options is None:
            return []
        return list(self.options() if callable(self.options) else self.options)


@dataclass(frozen=True)
class Out:
    """One node output: socket type, name shown on the node, and tooltip."""

    type: str
    name: str
    tooltip: str


@dataclass
class NodeResult:
    """What ``execute`` returns: output values in schema order, plus optional UI payload.

    ``ui`` may hold ``{"text": [str, ...]}`` (shown on the node) and/or ``images``: a list of
    IMAGE tensors ``(B, H, W, 3)`` in ``[0, 1]`` to show as node previews.
    """

    outputs: tuple[Any, ...]
    ui: dict[str, Any] = field(default_factory=dict)


def check_numbers(node: type[NodeDef], values: Mapping[str, Any]) -> None:
    """Refuse FLOAT/INT input values that are not finite numbers or lie outside the input's range.

    ComfyUI checks a widget's min/max before a run, but a value arriving through a link (a math
    node, another pack) is not checked, and NaN passes every comparison; a NaN feather or erode
    would otherwise write NaN into the image. Inputs that were not given are skipped.

    Raises:
        ValueError: naming the node, the input, the value and the allowed range.
    """
    for spec in node.inputs():
        if spec.type not in ("FLOAT", "INT") or values.get(spec.id) is None:
            continue
        value = values[spec.id]
        lo = f"{spec.min:g}" if spec.min is not None else "-inf"
        hi = f"{spec.max:g}" if spec.max is not None else "inf"
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{node.DISPLAY_NAME}: {spec.id} must be a number between {lo} and {hi}, got {value!r}."
            ) from None
        if not math.isfinite(number):
            raise ValueError(
                f"{node.DISPLAY_NAME}: {spec.id} must be between {lo} and {hi}, got {value} (not a finite number: "
                "check the node linked to this input)."
            )
        if (spec.min is not None and number < spec.min) or (spec.max is not None and number > spec.max):
            raise ValueError(f"{node.DISPLAY_NAME}: {spec.id} must be between {lo} and {hi}, got {value}.")


class NodeDef:
    """Base of every FaceMend node. Subclasses set the class attributes and ``execute``.

    Every subclass's ``execute`` first runs :func:`check_numbers` on its keyword inputs, so each
    FLOAT/INT input is checked in one place, whoever calls the node (ComfyUI, tests, scripts).
    """

    NODE_ID: ClassVar[str]
    DISPLAY_NAME: ClassVar[str]
    CATEGORY: ClassVar[str]
    DESCRIPTION: ClassVar[str]
    INPUTS: ClassVar[Sequence[In]] = ()
    OUTPUTS: ClassVar[Sequence[Out]] = ()
    OUTPUT_NODE: ClassVar[bool] = False

    @classmethod
    def inputs(cls) -> Sequence[In]:
        """Inputs in display order; override to compute them (e.g. model lists)."""
        return cls.INPUTS

    @classmethod
    def execute(cls, **kwargs: Any) -> NodeResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("execute")
        if isinstance(own, classmethod):
            run = own.__func__

            @functools.wraps(run)
            def checked(node: type[NodeDef], *args: Any, **inputs: Any) -> NodeResult:
                check_numbers(node, inputs)
                return run(node, *args, **inputs)

            cls.execute = classmethod(checked)  # type: ignore[method-assign]

    @classmethod
    def fingerprint(cls, **kwargs: Any) -> Any:
        """Value that changes when the node must re-run although its inputs did not (e.g. a file
        changed on disk). ``None`` means: rely on ComfyUI's input caching."""
        return None
