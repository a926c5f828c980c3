"""The one table of model families: which node takes each family, and which of its widgets drive it.

Every architecture's :class:`~facemend.archs.spec.ArchSpec` names its family here. The loader's
info text, the "connect it to ..." errors, the frontend's greyed-out controls, Restore Faces and
the command line all read this table; nothing else lists families.

Adding a family = one :class:`Family` row (its ``packages`` are the ``archs/<package>`` folders
whose ``SPECS`` the registry collects).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        id: stable family id (``ArchSpec.family``).
        label: what the family is, in a user's words (``"GFP-GAN face restorer"``).
        node_id: id of the modular-chain node that takes the family's models.
        node_name: that node's display name (errors and info text name nodes by it).
        widgets: that node's widgets that steer the model (greyed out in the UI when the loaded
            model takes none of them).
        restore_faces_widget: the widget of 'FaceMend Restore Faces' that steers this family, or
            ``None`` when Restore Faces does not take the family at all.
        packages: ``archs/<package>`` folders that hold the family's architectures.
        auto_clean: with Restore Faces' automatic per-face mode, the value its widget takes for a
            clean face (degradation score 0); a ruined face (score 1) gets the widget's own value,
            faces in between a linear mix. ``None``: no automatic mode.
    """

    id: str
    label: str
    node_id: str
    node_name: str
    widgets: tuple[str, ...]
    restore_faces_widget: str | None
    packages: tuple[str, ...]
    auto_clean: float | None = None


FAMILIES: tuple[Family, ...] = (
    Family("gfpgan", "GFP-GAN face restorer", "FaceMendCSSFTModulate", "FaceMend CS-SFT Modulate",
           ("strength", "strength_coarse", "strength_fine", "noise", "seed", "per_face_strength"), "strength", ("gfpgan",),
           auto_clean=1.5),  # a clean face: stronger CS-SFT, closer to the input
    Family("codebook", "codebook face restorer", "FaceMendCodebookRestore", "FaceMend Codebook Restore",
           ("fidelity", "per_face_fidelity"), "fidelity", ("codeformer", "restoreformer", "vqfr"),
           auto_clean=1.0),  # a clean face: full fidelity, its identity kept
    Family("refusion", "diffusion refiner", "FaceMendDiffusionRefine", "FaceMend Diffusion Refine",
           ("sampler", "steps", "max_sigma", "eps", "schedule", "seed", "strength"), None, ("refusion",)),
    Family("gpen", "GPEN face restorer", "FaceMendGPENRestore", "FaceMend GPEN Restore",
           ("strength", "normalize", "per_face_strength"), "strength", ("gpen",),
           auto_clean=0.0),  # a clean face: GPEN's blend at 0, the input kept
)


#: The one-node restore, which takes every family with a ``restore_faces_widget``.
RESTORE_FACES_NODE = "FaceMendRestoreFaces"

#: Widgets whose name is not the control they drive.
WIDGET_CONTROL = {"per_face_fidelity": "fidelity", "per_face_strength": "strength"}


def family(family_id: str) -> Family:
    """The row of ``family_id``; ``KeyError`` naming the known ids otherwise."""
    for f in FAMILIES:
        if f.id == family_id:
            return f
    raise KeyError(f"unknown model family {family_id!r}; known: {', '.join(f.id for f in FAMILIES)}")


def restore_faces_families() -> tuple[Family, ...]:
    """The families 'FaceMend Restore Faces' runs (those with a Restore Faces widget)."""
    return tuple(f for f in FAMILIES if f.restore_faces_widget is not None)


def control_widgets(family_id: str, controls: set[str]) -> dict[str, dict[str, bool]]:
    """For every node that takes a model: its control widgets, and whether each steers a model of
    ``family_id`` that honours ``controls`` (the model's controls less those its checkpoint pins).

    A node of another family gets all its widgets ``False`` (the model does not belong there);
    Restore Faces gets ``True`` only for the family's own widget, when the model honours it.
    """
    def applies(widget: str) -> bool:
        return WIDGET_CONTROL.get(widget, widget) in controls

    table = {row.node_id: {w: row.id == family_id and applies(w) for w in row.widgets} for row in FAMILIES}
    own = family(family_id).restore_faces_widget
    widgets = sorted({f.restore_faces_widget for f in restore_faces_families()}, key=str)
    table[RESTORE_FACES_NODE] = {w: w == own and applies(w) for w in widgets}
    return table
