"""Pure per-painting functions: a tuned painting -> the files of its commit (bytes by name), and the render and
result.json steps on their own (a re-render from a stored delta, a metadata refresh)."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

import torch

from artmator.model.backbone import Backbone
from artmator.model.delta import apply_delta, encode_delta
from artmator.model.images import to_pil, to_png_bytes
from artmator.model.mesh import MeshConfig, MeshError, encode_glb, expression_morphs, extract_mesh, morph_shift
from artmator.model.render import RenderConfig, render_expressions, render_turntable, render_views, turntable_angles
from artmator.model.tune import TunedPainting
from artmator.pipeline.gallery.video import encode_webp
from artmator.pipeline.layout import (DELTA, INPUT, MESH, METADATA_COLUMNS, MODEL_CARD, PAINTING, REFERENCE,
                                      RESULT, TURNTABLE_WEBP, expression_name, frame_name, plain_json)
from artmator.pipeline.provenance import glb_extras, model_card, xmp_packet

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# Reference-view LPIPS above this after stage 2 is flagged for a curator to look at.
WEAK_FIT_LPIPS = 0.35
# Stage 2 trades some reference fit for style; only a rise of the reference LPIPS by more than this fraction of its
# stage-1 value says stage 2 moved away from the painting (the demo's quick runs move it by 0-3 % either way).
DRIFT_MARGIN = 0.05


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
    if lp is not None and lp > tuned.metrics.get("lpips_stage1", math.inf) * (1 + DRIFT_MARGIN):
        flags.append("stage2_drifted")
    return flags


def painting_files(backbone: Backbone, tuned: TunedPainting, render: RenderConfig,
                   expressions: Mapping[str, torch.Tensor], metadata: Mapping[str, object],
                   flags: list[str], face_input: Mapping[str, object] | None = None, face_scorer=None,
                   painting_face: torch.Tensor | None = None, extra: Mapping[str, object] | None = None,
                   painting_image: bytes | None = None, provenance: Mapping | None = None,
                   weights_license: str | None = None) -> dict[str, bytes]:
    """Everything a committed painting holds except the marker: delta, tuned input, renders, result.json.

    face_scorer: a `model.faces.metrics.FaceScorer` (loaded once per process) to score the renders with the
    pretrained face networks (result.json `face`, and flags); painting_face: the tuned (1, 3, R, R) input in
    [-1, 1], kept as input.png and used for `likeness`. The quality flags written are `flags` (the tuning's) plus
    the face flags: read them back from result.json (`result_flags`). `extra`: pass-through manifest columns.
    painting_image: the painting file's bytes, kept as a web-sized painting.jpg (the gallery and IIIF show it
    beside the head). provenance (`provenance.provenance_record`) and weights_license go into result.json and
    model_card.md.
    """
    if tuned.delta is None:
        raise ValueError(f"{tuned.painting_id}: cannot write outputs of a failed painting ({tuned.error})")
    files: dict[str, bytes] = {DELTA: encode_delta(tuned.delta.tensors, tuned.delta.metadata)}
    if painting_face is not None:
        files[INPUT] = to_png_bytes(painting_face)
    if painting_image is not None:
        files[PAINTING] = web_copy(painting_image, tuned.painting_id)
    device = next(backbone.parameters()).device
    latent = {k: v.to(device) for k, v in tuned.latent.items()}
    renders, rendered = render_files(apply_delta(backbone, tuned.delta), latent, tuned.yaw_deg, tuned.pitch_deg,
                                     render, expressions, face_scorer, painting_face, tuned.painting_id)
    files.update(renders)
    record = tune_record(tuned, flags, face_input, len(files[DELTA]), provenance)
    files[RESULT] = result_document(tuned.painting_id, record, rendered, metadata, extra)
    files[MODEL_CARD] = model_card(json.loads(files[RESULT]), weights_license)
    return files


WEB_COPY_SIDE = 1600
"""Longest side of the published copy of a painting (a web page's worth, never the master)."""


def web_copy(data: bytes, source: str, max_side: int = WEB_COPY_SIDE, quality: int = 88) -> bytes:
    """A painting file as a web-sized sRGB JPEG (EXIF-upright, colour-managed, at most `max_side` px)."""
    import io

    from artmator.model.images import decode_bounded

    image, _ = decode_bounded(data, source, max_side=max_side)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True, progressive=True)
    return buffer.getvalue()


def tune_record(tuned: TunedPainting, flags: list[str], face_input: Mapping[str, object] | None,
                delta_bytes: int, provenance: Mapping | None = None) -> dict:
    """The parts of result.json that tuning decides (a re-render or a refresh keeps them as they are)."""
    pose_source = (face_input or {}).get("pose_source") or ("search" if tuned.pose_estimated else "given")
    return {
        "pose": {"yaw_deg": tuned.yaw_deg, "pitch_deg": tuned.pitch_deg,
                 "estimated": tuned.pose_estimated or pose_source != "given", "source": pose_source},
        "face_input": dict(face_input or {}),
        "quality": {"lpips_ref": tuned.metrics.get("lpips_ref"), "psnr_ref": tuned.metrics.get("psnr_ref"),
                    "lpips_stage1": tuned.metrics.get("lpips_stage1"), "psnr_stage1": tuned.metrics.get("psnr_stage1"),
                    "tune_flags": list(flags)},
        "timings": tuned.timings,
        "steps": dict(tuned.steps or {}),
        "losses": tuned.losses,
        "delta_bytes": delta_bytes,
        "base_sha256": tuned.delta.metadata.base_sha256,
        "provenance": dict(provenance or {}),
    }


def render_files(g_trn: Backbone, latent, yaw: float, pitch: float, render: RenderConfig,
                 expressions: Mapping[str, torch.Tensor], face_scorer=None,
                 painting_face: torch.Tensor | None = None, painting_id: str | None = None
                 ) -> tuple[dict[str, bytes], dict]:
    """A tuned generator's renders of one painting (latent batch 1, on the generator's device) and the render
    part of result.json: the one render path of `run` (after tuning, or from a stored delta) and `render`. Every
    render file says it is AI-generated: XMP (IPTC DigitalSourceType, `provenance.xmp_packet`, naming
    `painting_id`) in each PNG and the WebP, `asset.extras` in the mesh."""
    for name in expressions:
        if not SAFE_NAME.match(name):
            raise ValueError(f"expression name {name!r} is not a safe file name (letters, digits, . _ -)")
    files: dict[str, bytes] = {}
    xmp = xmp_packet(painting_id)
    reference = render_views(g_trn, latent, torch.tensor([yaw]), torch.tensor([pitch]), render)[0]
    files[REFERENCE] = to_png_bytes(reference, xmp)
    frames = render_turntable(g_trn, latent, render, yaw, pitch)                     # (N, 3, H, W)
    for i, frame in enumerate(frames):
        files[frame_name(i)] = to_png_bytes(frame, xmp)
    files[TURNTABLE_WEBP] = encode_webp([to_pil(f) for f in frames], render.fps, xmp=xmp)
    stills = render_expressions(g_trn, latent, expressions, render, yaw, pitch)
    for name, still in stills.items():
        files[expression_name(name)] = to_png_bytes(still, xmp)
    yaws, _ = turntable_angles(render, yaw, pitch)
    face, flags = None, []
    if face_scorer is not None:
        from artmator.model.faces.metrics import face_flags

        metrics = face_scorer.score(list(frames), [float(y) for y in yaws], reference, painting_face, stills)
        face, flags = metrics.as_dict(), face_flags(metrics)
    mesh, mesh_flags = mesh_file(g_trn, latent, render, files, expressions)
    record = {"resolution": render.resolution,
              "turntable": {"frames": len(frames), "yaw_deg": [round(float(y), 4) for y in yaws], "fps": render.fps},
              "expressions": list(expressions), "face": face, "mesh": mesh, "face_flags": [*flags, *mesh_flags]}
    return files, record


def mesh_file(g_trn: Backbone, latent, render: RenderConfig, files: dict[str, bytes],
              expressions: Mapping[str, torch.Tensor] | None = None) -> tuple[dict | None, list]:
    """Add the head's mesh.glb to `files` when asked (`render.mesh_resolution`), with a morph target per
    expression still where the backbone can say how its field moves (`Backbone.morph_points`); returns its
    result.json record and flags. A backbone without a 3-D field, or a field without a surface, leaves the
    painting without a mesh (recorded, and flagged `no_mesh` in the second case); it keeps its renders."""
    if not render.mesh_grid:
        return None, []
    config = MeshConfig(resolution=render.mesh_grid)
    try:
        mesh = extract_mesh(g_trn, latent, config, psi=render.psi)
    except NotImplementedError as exc:
        return {"error": str(exc), "kind": "unsupported"}, []
    except MeshError as exc:
        return {"error": str(exc), "kind": "no_surface"}, ["no_mesh"]
    morphs = None
    if expressions:
        try:
            mesh = expression_morphs(g_trn, latent, mesh, expressions)
            morphs = {name: {"max_shift": round(float(morph_shift(mesh, name).max()), 6)} for name in mesh.morphs}
        except NotImplementedError as exc:
            morphs = {"error": str(exc)}
    try:
        data = encode_glb(mesh, glb_extras())
    except MeshError as exc:
        return {"error": str(exc), "kind": "no_surface"}, ["no_mesh"]
    files[MESH] = data
    record = {"file": MESH, "resolution": config.resolution, "vertices": int(len(mesh.vertices)),
              "faces": int(len(mesh.faces)), "bytes": len(data)}
    if morphs is not None:
        record["morph_targets"] = morphs
    return record, []


def result_document(painting_id: str, tuned: Mapping, rendered: Mapping, metadata: Mapping[str, object],
                    extra: Mapping[str, object] | None = None) -> bytes:
    """result.json from its three sources: the tuning's record, the renders' record and the catalogue row."""
    quality = dict(tuned["quality"])
    tune_flags = list(quality.get("tune_flags") or [])
    quality["flags"] = [*tune_flags, *(f for f in rendered.get("face_flags") or [] if f not in tune_flags)]
    doc = {"painting_id": painting_id,
           "metadata": {k: metadata.get(k) for k in METADATA_COLUMNS},
           "extra": plain_json(dict(extra or {})),
           **{k: v for k, v in tuned.items() if k != "quality"},
           **{k: v for k, v in rendered.items() if k != "face_flags"},
           "quality": quality}
    return json.dumps(doc, indent=1, allow_nan=False, default=_json_default).encode()


def records_of(result: Mapping) -> tuple[dict, dict]:
    """(tune record, render record) of a committed result.json, as `result_document` put them together."""
    tuned = {k: result.get(k) for k in ("pose", "face_input", "timings", "steps", "losses", "delta_bytes",
                                        "base_sha256", "provenance")}
    quality = dict(result.get("quality") or {})
    tune_flags = list(quality.get("tune_flags") or [])
    tuned["quality"] = {**{k: v for k, v in quality.items() if k != "flags"}, "tune_flags": tune_flags}
    rendered = {k: result.get(k) for k in ("resolution", "turntable", "expressions", "face", "mesh")}
    rendered["face_flags"] = [f for f in quality.get("flags") or [] if f not in tune_flags]
    return tuned, rendered


def png_tensor(data: bytes) -> torch.Tensor:
    """A stored PNG (e.g. input.png) back as a (1, 3, H, W) tensor in [-1, 1]: the inverse of `to_png_bytes`."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)     # (H, W, 3)
    return torch.from_numpy(pixels).permute(2, 0, 1)[None] / 127.5 - 1.0


def result_flags(files: Mapping[str, bytes]) -> list[str]:
    """The quality flags a painting's result.json carries (the one place they are decided)."""
    return list(json.loads(files[RESULT])["quality"]["flags"])


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
