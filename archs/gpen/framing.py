"""GPEN's face framing: the 5-point template of its official ``align_faces.py`` for a 512 crop.

The official inference (``face_enhancement.py``) aligns faces to
``get_reference_facial_points((size, size), inner_padding_factor=0.25, outer_padding=(0, 0),
default_square=True)`` with a least-squares similarity (Umeyama). That function starts from the
classic 96x112 five-point reference (the landmark constants below), centres it in a 112x112
square, pads that square by 25 % on every side (112 -> 168) and scales it to the crop size.
The template is linear in the crop size, so the 512 version serves every GPEN size.
"""

from __future__ import annotations

from ..framing import Framing

#: The five reference landmarks (left eye, right eye, nose, left and right mouth corner) of the
#: 96x112 crop that ``align_faces.py`` starts from.
REFERENCE_96x112: tuple[tuple[float, float], ...] = (
    (30.29459953, 51.69630051),
    (65.53179932, 51.50139999),
    (48.02519989, 71.73660278),
    (33.54930115, 92.3655014),
    (62.72990036, 92.20410156),
)
_CROP_W, _CROP_H = 96, 112


def gpen_template(size: int = 512, inner_padding_factor: float = 0.25) -> tuple[tuple[float, float], ...]:
    """GPEN's five ``(x, y)`` landmark positions in a ``size`` x ``size`` crop (float pixels).

    Same steps as the official ``get_reference_facial_points`` with ``default_square=True`` and no
    outer padding: centre the 96x112 reference in a square of its longer side, add
    ``inner_padding_factor`` of that side on every edge (the new side is rounded to whole pixels,
    as officially), scale to ``size``.
    """
    side = max(_CROP_W, _CROP_H)
    shift_x, shift_y = (side - _CROP_W) / 2, (side - _CROP_H) / 2
    pad = side * inner_padding_factor  # per edge
    padded = side + round(2 * pad)
    scale = size / padded
    return tuple(((x + shift_x + pad) * scale, (y + shift_y + pad) * scale) for x, y in REFERENCE_96x112)


#: The framing every GPEN checkpoint was trained on (crop of any size: scale ``template_512``).
GPEN_FRAMING = Framing(
    name="gpen",
    label="GPEN (align_faces.py, 25 % inner padding)",
    template_512=tuple((round(x, 5), round(y, 5)) for x, y in gpen_template(512)),
    fit="least-squares",
)
