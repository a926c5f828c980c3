"""Widget values -> a restorer's keyword controls: the one mapping nodes and the command line share.

A node (or ``facemend restore``) has widget values such as ``fidelity`` or ``strength``; a
:class:`~facemend.model_loaders.RestorationModel` honours the controls its
:class:`~facemend.archs.spec.ArchSpec` lists. :func:`plan_controls` passes each value the model
takes (one value for every crop, or one per crop), and explains each one it does not take or
that the checkpoint pins (CodeFormer colorization runs at fidelity 0).

Defaults of these widgets live in :data:`RESTORE`; the Restore Faces widget of each family is in
the family table (:data:`facemend.archs.families.FAMILIES`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..archs.families import Family, restore_faces_families

log = logging.getLogger("facemend")

#: A widget value: a number or choice for every crop, or a sequence with one number per crop.
Value = float | int | str | Sequence[float]


@dataclass(frozen=True)
class RestoreSettings:
    """Defaults of the restore widgets (Codebook Restore, CS-SFT Modulate, GPEN, Restore Faces, CLI).

    Attributes:
        fidelity: codebook models: 0 = rely on the codebook (quality), 1 = closest to the input.
        strength: GAN-prior models: CS-SFT strength (GFP-GAN, 0-3) or blend with the input (GPEN, 0-1).
        strength_coarse, strength_fine: CS-SFT multipliers of the coarse / fine levels.
        noise: GFP-GAN noise: ``"stored"`` (the checkpoint's) or ``"random"`` (seeded).
        seed: noise seed (face ``k`` of a batch uses ``seed + k``).
    """

    fidelity: float = 0.5
    strength: float = 1.0
    strength_coarse: float = 1.0
    strength_fine: float = 1.0
    noise: str = "stored"
    seed: int = 0


RESTORE = RestoreSettings()


@dataclass(frozen=True)
class ControlPlan:
    """What :func:`facemend.model_loaders.restore_batch` receives, and what to tell the user.

    Attributes:
        controls: keyword controls passed with every chunk.
        per_item: controls with one value per crop (batch order).
        applied: ``name -> value`` text of the controls that drive the model (for the summary).
        notes: one line per widget value the model does not use, and why.
    """

    controls: dict[str, Any] = field(default_factory=dict)
    per_item: dict[str, list[float]] = field(default_factory=dict)
    applied: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def summary(self, model: Any) -> str:
        """One line for the node: ``"CodeFormer: fidelity 0.5"`` plus the notes."""
        parts = [f"{model.spec.display_name}: " + ", ".join(f"{k} {v}" for k, v in self.applied.items())] if self.applied else []
        return "; ".join(parts + list(self.notes)) or f"{model.spec.display_name}: no controls"


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return ", ".join(f"{float(v):g}" for v in value)
    return f"{value:g}"


def plan_controls(model: Any, values: Mapping[str, Value | None], count: int) -> ControlPlan:
    """Map widget ``values`` onto ``model``'s controls for ``count`` crops.

    Args:
        model: a ``RestorationModel``.
        values: widget name -> value; ``None`` means "not set". A sequence gives one value per
            crop (length ``count``; a single-element sequence applies to every crop).
        count: number of crops.

    Returns:
        A :class:`ControlPlan`. Values the model does not take, or that its checkpoint pins, are
        left out and explained in ``notes`` (also logged). Models with a ``face_index`` control
        get each crop's index, so seeded noise does not depend on how the batch is chunked.
    """
    takes = set(model.spec.controls)
    fixed = model.fixed_controls
    controls: dict[str, Any] = {}
    per_item: dict[str, list[float]] = {}
    applied: dict[str, str] = {}
    notes: list[str] = []
    name_of = f"{model.spec.display_name} ({model.arch})"
    for name, value in values.items():
        if value is None:
            continue
        if name not in takes:
            notes.append(f"{name} does not apply to {name_of}; the value is ignored")
            continue
        if name in fixed:
            variant = model.hparams.get("variant", "this checkpoint")
            notes.append(
                f"{model.spec.display_name} {variant} model: {name} is fixed at {fixed[name]:g} as in the official "
                "inference; the value is ignored"
            )
            continue
        if isinstance(value, Sequence) and not isinstance(value, str):
            values_list = [float(v) for v in value]
            if len(values_list) == count and count > 1:
                per_item[name] = values_list
            else:
                controls[name] = values_list[0]
        else:
            controls[name] = value
        applied[name] = _text(value)
    if "face_index" in takes:
        per_item["face_index"] = list(range(count))
    for note in notes:
        log.info("FaceMend: %s", note)
    return ControlPlan(controls, per_item, applied, tuple(notes))


def check_restore_faces_model(model: Any) -> Family:
    """The family row of ``model`` when Restore Faces (and ``facemend restore``) runs that family.

    Raises:
        ValueError: a model of a family the one-node restore does not take (a diffusion refiner),
            saying which node takes it instead.
    """
    row = model.family_row
    if row.restore_faces_widget is None:
        takes = ", ".join(f.label for f in restore_faces_families())
        raise ValueError(
            f"{model.spec.display_name} ({model.arch}) is a {row.label}, not a face restorer: use it with "
            f"'{row.node_name}' in the modular chain, and give Restore Faces a {takes} model."
        )
    return row


def restore_faces_plan(
    model: Any, fidelity: float, strength: float, count: int, scores: Sequence[float] | None = None
) -> ControlPlan:
    """Restore Faces' (and ``facemend restore``'s) mapping onto ``model``.

    The family's own Restore Faces widget (family table) drives the model; the family node's other
    widgets take their defaults (:data:`RESTORE`), so the result equals the modular chain with
    that node at its defaults. The other Restore Faces widget is reported as not applying.

    With ``scores`` (one degradation score in ``[0, 1]`` per face, see
    :func:`facemend.face.quality.assess_faces`), each face gets its own value of that widget:
    ``clean + (widget - clean) * score``, ``clean`` being the family's ``auto_clean`` (a clean
    face keeps its identity, a ruined one gets the widget's value).

    Raises:
        ValueError: a model whose family Restore Faces does not run (e.g. a diffusion refiner).
    """
    row = check_restore_faces_model(model)
    own = row.restore_faces_widget
    widgets = {"fidelity": fidelity, "strength": strength}
    values: dict[str, Value | None] = {w: getattr(RESTORE, w) for w in row.widgets if hasattr(RESTORE, w)}
    values[own] = widgets[own]
    if scores is not None and row.auto_clean is not None:
        clean, ruined = row.auto_clean, widgets[own]
        values[own] = [clean + (ruined - clean) * float(s) for s in scores]
    plan = plan_controls(model, values, count)
    ignored = tuple(
        f"{name} does not apply to {model.spec.display_name} ({model.arch}); the value is ignored"
        for name in widgets if name != own
    )
    for note in ignored:
        log.info("FaceMend: %s", note)
    return replace(plan, applied={own: plan.applied[own]} if own in plan.applied else {}, notes=plan.notes + ignored)
