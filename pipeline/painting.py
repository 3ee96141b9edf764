"""Pure per-painting functions: a tuned painting -> the files of its output folder (bytes by relative path)."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

import torch

from artmator.model.backbone import Backbone
from artmator.model.delta import apply_delta, encode_delta
from artmator.model.images import to_pil, to_png_bytes
from artmator.model.render import RenderConfig, render_expressions, render_turntable, render_views, turntable_angles
from artmator.model.tune import TunedPainting
from artmator.pipeline.gallery.video import encode_webp
from artmator.pipeline.manifest import METADATA_COLUMNS

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# Reference-view LPIPS above this after stage 2 is flagged for a curator to look at.
WEAK_FIT_LPIPS = 0.35


def quality_flags(tuned: TunedPainting, random_models: bool, pose_source: str | None = None) -> list[str]:
    """Short machine-readable notes shown with the painting in reports and the gallery."""
    flags = []
    if tuned.pose_estimated or pose_source == "landmarks":
        flags.append("pose_estimated")
    if random_models:
        flags.append("random_weights")
    lp = tuned.metrics.get("lpips_ref")
    if lp is not None and lp > WEAK_FIT_LPIPS:
        flags.append("weak_fit")
    if lp is not None and lp > tuned.metrics.get("lpips_stage1", math.inf):
        flags.append("stage2_drifted")
    return flags


def painting_files(backbone: Backbone, tuned: TunedPainting, render: RenderConfig,
                   expressions: Mapping[str, torch.Tensor], metadata: Mapping[str, object],
                   flags: list[str], face_input: Mapping[str, object] | None = None, face_scorer=None,
                   painting_face: torch.Tensor | None = None) -> dict[str, bytes]:
    """Everything a committed painting folder holds except the marker: delta, renders, result.json.

    face_scorer: a `model.faces.metrics.FaceScorer` (loaded once per process) to score the renders with the
    pretrained face networks (result.json `face`, and flags); painting_face: the tuned (1, 3, R, R) input in
    [-1, 1], for `likeness`. The quality flags written are `flags` plus the face flags: read them back from
    result.json (`result_flags`).
    """
    if tuned.delta is None:
        raise ValueError(f"{tuned.painting_id}: cannot write outputs of a failed painting ({tuned.error})")
    for name in expressions:
        if not SAFE_NAME.match(name):
            raise ValueError(f"expression name {name!r} is not a safe file name (letters, digits, . _ -)")
    g_trn = apply_delta(backbone, tuned.delta)
    device = next(backbone.parameters()).device
    latent = {k: v.to(device) for k, v in tuned.latent.items()}
    yaw, pitch = tuned.yaw_deg, tuned.pitch_deg
    pose_source = (face_input or {}).get("pose_source") or ("search" if tuned.pose_estimated else "given")

    files: dict[str, bytes] = {"delta.safetensors": encode_delta(tuned.delta.tensors, tuned.delta.metadata)}
    reference = render_views(g_trn, latent, torch.tensor([yaw]), torch.tensor([pitch]), render)[0]
    files["reference.png"] = to_png_bytes(reference)
    frames = render_turntable(g_trn, latent, render, yaw, pitch)                     # (N, 3, H, W)
    pil_frames = [to_pil(f) for f in frames]
    for i, frame in enumerate(frames):
        files[f"renders/turntable/{i:03d}.png"] = to_png_bytes(frame)
    files["renders/turntable.webp"] = encode_webp(pil_frames, render.fps)
    stills = render_expressions(g_trn, latent, expressions, render, yaw, pitch)
    for name, still in stills.items():
        files[f"renders/expressions/{name}.png"] = to_png_bytes(still)
    yaws, _ = turntable_angles(render, yaw, pitch)
    face = None
    if face_scorer is not None:
        from artmator.model.faces.metrics import face_flags

        metrics = face_scorer.score(list(frames), [float(y) for y in yaws], reference, painting_face, stills)
        face = metrics.as_dict()
        flags = [*flags, *(f for f in face_flags(metrics) if f not in flags)]
    result = {
        "painting_id": tuned.painting_id,
        "metadata": {k: metadata.get(k) for k in METADATA_COLUMNS},
        "pose": {"yaw_deg": yaw, "pitch_deg": pitch, "estimated": tuned.pose_estimated or pose_source != "given",
                 "source": pose_source},
        "face_input": dict(face_input or {}),
        "face": face,
        "resolution": render.resolution,
        "turntable": {"frames": len(frames), "yaw_deg": [round(float(y), 4) for y in yaws], "fps": render.fps},
        "expressions": list(expressions),
        "quality": {"lpips_ref": tuned.metrics.get("lpips_ref"), "psnr_ref": tuned.metrics.get("psnr_ref"),
                    "lpips_stage1": tuned.metrics.get("lpips_stage1"), "psnr_stage1": tuned.metrics.get("psnr_stage1"),
                    "flags": flags},
        "timings": tuned.timings,
        "losses": tuned.losses,
        "delta_bytes": len(files["delta.safetensors"]),
        "base_sha256": tuned.delta.metadata.base_sha256,
    }
    files["result.json"] = json.dumps(result, indent=1, allow_nan=False, default=_json_default).encode()
    return files


def result_flags(files: Mapping[str, bytes]) -> list[str]:
    """The quality flags a painting's result.json carries (the one place they are decided)."""
    return list(json.loads(files["result.json"])["quality"]["flags"])


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
