"""Face framings: where the five landmarks sit in the crop a network was trained on.

GFP-GAN, CodeFormer, RestoreFormer(++) and VQFR were trained on FFHQ-aligned faces (facexlib's
``FaceRestoreHelper`` template); GPEN on its own framing (``align_faces.py`` with inner padding).
Each :class:`~facemend.archs.spec.ArchSpec` declares its :class:`Framing`; the face pipeline
(:func:`facemend.face.alignment.face_template`) scales the template to any crop size.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Framing:
    """A landmark template and the fit the official inference uses with it.

    Attributes:
        name: stable id, used as a widget value in saved workflows (``"ffhq"``, ``"gpen"``).
        label: human description for tooltips.
        template_512: five ``(x, y)`` points (left eye, right eye, nose, left and right mouth
            corner, as seen in the image) for a 512x512 crop.
        fit: the similarity fit of the official code: ``"lmeds"`` (``cv2.estimateAffinePartial2D``
            with LMEDS, as facexlib) or ``"least-squares"`` (Umeyama, as GPEN's ``align_faces``).
    """

    name: str
    label: str
    template_512: tuple[tuple[float, float], ...]
    fit: str = "lmeds"


#: facexlib's FFHQ 5-point template for a 512x512 face (GFP-GAN, CodeFormer, RestoreFormer, VQFR).
FFHQ = Framing(
    name="ffhq",
    label="FFHQ (GFP-GAN, CodeFormer, RestoreFormer, VQFR)",
    template_512=(
        (192.98138, 239.94708), (318.90277, 240.19360), (256.63416, 314.01935),
        (201.26117, 371.41043), (313.08905, 371.15118),
    ),
    fit="lmeds",
)
