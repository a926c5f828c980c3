"""Face geometry: detection adapters, alignment, selection, masks, paste-back, colour transfer.

Public entry points (used by the Detect, Paste Back and Restore Faces nodes):

* :func:`~facemend.face.models.load_face_models` -> :class:`~facemend.face.models.FaceModels`
  (``FACEMEND_DETECTOR``);
* :func:`~facemend.face.pipeline.detect_and_align` -> crops + :class:`~facemend.face.records.FaceSet`
  (``FACEMEND_FACES``);
* :func:`~facemend.face.pipeline.paste_back` -> image + blend mask;

Modules: ``models`` (files, downloads, facexlib networks), ``detection`` (batched RetinaFace),
``selection``, ``tracking`` (video), ``alignment`` (FFHQ template), ``warp`` (antialiased kornia
warps in face windows), ``masks``, ``color``, ``paste``, ``preview``, ``records``, ``pipeline``,
``degradation`` (raw per-face blur, noise, JPEG measures), ``quality`` (per-face degradation score ->
per-face fidelity, strength and paste-back opacity).
"""

from .models import FaceModels, load_face_models
from .pipeline import DetectResult, detect_and_align, paste_back
from .records import FaceSet

__all__ = ["DetectResult", "FaceModels", "FaceSet", "detect_and_align", "load_face_models", "paste_back"]
