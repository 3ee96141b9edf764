"""Helpers shared by the Ray pipeline tests: tiny settings, generated paintings and manifests.

The session-scoped `ray_local` fixture lives in conftest.py (one Ray per test session).
"""
from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import replace

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from artmator.model.localize import PoseSearchConfig
from artmator.model.render import RenderConfig
from artmator.pipeline.settings import BackboneSettings, JobSettings, quick_settings


def tiny_settings(stage1: int = 3, stage2: int = 2) -> JobSettings:
    """Seconds per painting: tiny random backbone and encoders, 32 px, 3 turntable frames, one expression.

    Pose search runs at full tuning resolution (downsample 1: LPIPS-alex cannot take 16 px) with a short grid.
    """
    s = quick_settings()
    tune = replace(s.tune, resolution=32,
                   stage1=replace(s.tune.stage1, steps=stage1), stage2=replace(s.tune.stage2, steps=stage2),
                   pose_search=PoseSearchConfig(yaws_deg=(-15.0, 0.0, 15.0), pitches_deg=(0.0,), steps=2,
                                                downsample=1))
    # The generated "paintings" are face crops already (random blobs no face detector finds).
    return replace(s, backbone=BackboneSettings(preset="tiny", head_prior=False), tune=tune,
                   render=RenderConfig(resolution=32, turntable_frames=3, expressions=("happiness",)),
                   image=replace(s.image, find_faces=False), face_metrics=False)


def png_bytes(seed: int, size: int = 64) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    face = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 3) ** 2)[..., None]
    base = rng.integers(0, 255, size=(1, 1, 3))
    img = np.where(face, base, 255 - base) + rng.integers(0, 30, size=(size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_manifest(uri: str, rows: list[dict], storage_options: Mapping | None = None) -> str:
    """Write a manifest Parquet file (painting_id, image_uri, yaw_deg, pitch_deg, title) to any fsspec URI."""
    table = pa.table({
        "painting_id": pa.array([r["painting_id"] for r in rows], pa.string()),
        "image_uri": pa.array([r["image_uri"] for r in rows], pa.string()),
        "yaw_deg": pa.array([r.get("yaw_deg") for r in rows], pa.float64()),
        "pitch_deg": pa.array([r.get("pitch_deg") for r in rows], pa.float64()),
        "title": pa.array([r.get("title", r["painting_id"]) for r in rows], pa.string()),
    })
    with fsspec.open(uri, "wb", **dict(storage_options or {})) as f:
        pq.write_table(table, f)
    return uri


def write_images(folder: str, names_seeds: Mapping[str, int], storage_options: Mapping | None = None) -> None:
    fs, root = fsspec.core.url_to_fs(folder, **dict(storage_options or {}))
    fs.makedirs(root, exist_ok=True)
    for name, seed in names_seeds.items():
        fs.pipe_file(f"{root.rstrip('/')}/{name}", png_bytes(seed))


def good_rows(n: int, prefix: str = "p") -> list[dict]:
    """n valid rows with fixed poses, images named <id>.png next to the manifest."""
    return [{"painting_id": f"{prefix}{i}", "image_uri": f"{prefix}{i}.png", "yaw_deg": float(5 * (i % 3)),
             "pitch_deg": 0.0} for i in range(n)]
