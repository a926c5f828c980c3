"""Known official model files: where they come from, which folder they go to, their licence.

Names are the official file names (users' saved workflows refer to them). ``url`` is ``None`` for
files published only on Google Drive, which cannot be fetched without a browser: the ``page``
says where to get them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GFPGAN_LICENCE = "Apache-2.0 (TencentARC GFPGAN)"
CODEFORMER_LICENCE = "S-Lab License 1.0 (non-commercial)"
#: yangxy/GPEN's README, 2021-04-07 to 2026-03-10: "© Alibaba, 2021. For academic and
#: non-commercial use only." (the repository has no LICENSE file; the section was removed without
#: a replacement). ModelScope's copies carry the same weights' origin (DAMO Academy, Alibaba).
GPEN_LICENCE = "Alibaba GPEN: academic and non-commercial use only"


@dataclass(frozen=True)
class KnownModel:
    """One official checkpoint.

    Attributes:
        name: official file name.
        kind: model folder kind (``facerestore_models``, ``facedetection``, ``refusion``).
        arch: architecture id it loads as (or ``retinaface_*``/``parsing_*`` for facexlib nets).
        licence: licence of the weights.
        url: direct download URL, or ``None`` when only a manual download exists.
        page: human page for manual downloads / details.
        sha256: expected digest when known (verified after download), else ``None``.
        hparams: what the official file's tensor shapes are known to say, for describing it
            before it is downloaded (e.g. CodeFormer's ``variant``, GPEN's ``size``).
    """

    name: str
    kind: str
    arch: str
    licence: str
    url: str | None
    page: str = ""
    sha256: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)


_GH_GFPGAN = "https://github.com/TencentARC/GFPGAN/releases/download"
_GH_CF = "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0"
_GH_VQFR = "https://github.com/TencentARC/VQFR/releases/download"
_GH_FX = "https://github.com/xinntao/facexlib/releases/download"
_RF_DRIVE = "https://drive.google.com/drive/folders/1-WPxGJu8CK6SjprJSD4Mvm2zQH9J7xCU"
_REFUSION_DRIVE = "https://drive.google.com/drive/folders/1T5_UL4BgOIftEEkAzoa-SYX49P7COVa6"
_IRSDE_DRIVE = "https://drive.google.com/drive/folders/14SvJXvp0HPKFHpGaaHy7h2I2fkRnIXAG"
_GPEN_OSS = "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models"
_GPEN_PAGE = "https://github.com/yangxy/GPEN#usage"
#: GPEN-BFR-1024 and -2048 are published only on ModelScope, inside this model repository
#: (``pytorch_model.pt`` = 1024, ``pytorch_model-2048.pt`` = 2048, per the GPEN README); fetch them
#: with the ModelScope client or the page's file list.
_GPEN_HIRES = "https://www.modelscope.cn/models/damo/cv_gpen_image-portrait-enhancement-hires/files"

CATALOG: tuple[KnownModel, ...] = (
    KnownModel("GFPGANv1.4.pth", "facerestore_models", "gfpgan_clean", GFPGAN_LICENCE, f"{_GH_GFPGAN}/v1.3.0/GFPGANv1.4.pth",
               sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad"),
    KnownModel("GFPGANv1.3.pth", "facerestore_models", "gfpgan_clean", GFPGAN_LICENCE, f"{_GH_GFPGAN}/v1.3.0/GFPGANv1.3.pth"),
    KnownModel("GFPGANCleanv1-NoCE-C2.pth", "facerestore_models", "gfpgan_clean", GFPGAN_LICENCE, f"{_GH_GFPGAN}/v0.2.0/GFPGANCleanv1-NoCE-C2.pth"),
    KnownModel("GFPGANv1.pth", "facerestore_models", "gfpgan_v1", GFPGAN_LICENCE, f"{_GH_GFPGAN}/v0.1.0/GFPGANv1.pth"),
    KnownModel("codeformer.pth", "facerestore_models", "codeformer", CODEFORMER_LICENCE, f"{_GH_CF}/codeformer.pth",
               sha256="1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7", hparams={"variant": "restore"}),
    KnownModel("codeformer_colorization.pth", "facerestore_models", "codeformer", CODEFORMER_LICENCE, f"{_GH_CF}/codeformer_colorization.pth",
               hparams={"variant": "colorization"}),
    KnownModel("codeformer_inpainting.pth", "facerestore_models", "codeformer", CODEFORMER_LICENCE, f"{_GH_CF}/codeformer_inpainting.pth",
               hparams={"variant": "inpainting"}),
    KnownModel("RestoreFormer.pth", "facerestore_models", "restoreformer", GFPGAN_LICENCE, f"{_GH_GFPGAN}/v1.3.4/RestoreFormer.pth"),
    KnownModel("RestoreFormer.ckpt", "facerestore_models", "restoreformer", "Apache-2.0 (RestoreFormer)", None, _RF_DRIVE),
    KnownModel("RestoreFormer++.ckpt", "facerestore_models", "restoreformer_pp", "Apache-2.0 (RestoreFormer++)", None, _RF_DRIVE),
    KnownModel("VQFR_v1-33a1fac5.pth", "facerestore_models", "vqfr_v1", "Apache-2.0 (TencentARC VQFR)", f"{_GH_VQFR}/v1.0.0/VQFR_v1-33a1fac5.pth"),
    KnownModel("VQFR_v2.pth", "facerestore_models", "vqfr_v2", "Apache-2.0 (TencentARC VQFR)", f"{_GH_VQFR}/v2.0.0/VQFR_v2.pth"),
    KnownModel("GPEN-BFR-512.pth", "facerestore_models", "gpen", GPEN_LICENCE, f"{_GPEN_OSS}/GPEN-BFR-512.pth", _GPEN_PAGE,
               hparams={"size": 512}),
    KnownModel("GPEN-BFR-256.pth", "facerestore_models", "gpen", GPEN_LICENCE, f"{_GPEN_OSS}/GPEN-BFR-256.pth", _GPEN_PAGE,
               hparams={"size": 256}),
    KnownModel("GPEN-Colorization-1024.pth", "facerestore_models", "gpen", GPEN_LICENCE, f"{_GPEN_OSS}/GPEN-Colorization-1024.pth", _GPEN_PAGE,
               hparams={"size": 1024}),
    KnownModel("GPEN-Inpainting-1024.pth", "facerestore_models", "gpen", GPEN_LICENCE, f"{_GPEN_OSS}/GPEN-Inpainting-1024.pth", _GPEN_PAGE,
               hparams={"size": 1024}),
    KnownModel("GPEN-Seg2face-512.pth", "facerestore_models", "gpen", GPEN_LICENCE, f"{_GPEN_OSS}/GPEN-Seg2face-512.pth", _GPEN_PAGE,
               hparams={"size": 512}),
    KnownModel("pytorch_model.pt", "facerestore_models", "gpen", GPEN_LICENCE, None, _GPEN_HIRES, hparams={"size": 1024}),
    KnownModel("pytorch_model-2048.pt", "facerestore_models", "gpen", GPEN_LICENCE, None, _GPEN_HIRES, hparams={"size": 2048}),
    KnownModel("detection_Resnet50_Final.pth", "facedetection", "retinaface_resnet50", "MIT (facexlib / Pytorch_Retinaface)",
               f"{_GH_FX}/v0.1.0/detection_Resnet50_Final.pth",
               sha256="6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d"),
    KnownModel("detection_mobilenet0.25_Final.pth", "facedetection", "retinaface_mobile0.25", "MIT (facexlib / Pytorch_Retinaface)",
               f"{_GH_FX}/v0.1.0/detection_mobilenet0.25_Final.pth",
               sha256="2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220"),
    KnownModel("parsing_bisenet.pth", "facedetection", "parsing_bisenet", "MIT (facexlib)", f"{_GH_FX}/v0.2.0/parsing_bisenet.pth",
               sha256="468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567"),
    KnownModel("parsing_parsenet.pth", "facedetection", "parsing_parsenet", "MIT (facexlib)", f"{_GH_FX}/v0.2.2/parsing_parsenet.pth",
               sha256="3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2"),
    KnownModel("refusion (NAFNet / latent, per task)", "refusion", "refusion_nafnet", "MIT (image-restoration-sde)", None, _REFUSION_DRIVE),
    KnownModel("IR-SDE (ConditionalUNet, per task)", "refusion", "irsde_unet", "MIT (image-restoration-sde)", None, _IRSDE_DRIVE),
)


def known_models(kind: str | None = None) -> list[KnownModel]:
    """Catalog entries, optionally only those of one folder kind."""
    return [m for m in CATALOG if kind is None or m.kind == kind]


def find_known(name: str) -> KnownModel | None:
    """The catalog entry whose file name is ``name`` (case-sensitive), if any."""
    return next((m for m in CATALOG if m.name == name), None)
