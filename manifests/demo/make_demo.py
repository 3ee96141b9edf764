"""Build the demo catalog: painting-like portraits from scikit-image's bundled public-domain photos.

    python manifests/demo/make_demo.py          # rewrites the PNGs and manifest.parquet next to this file

Deterministic: the same scikit-image/Pillow versions give byte-identical files. Each image gets one Pillow
style so the demo shows the pipeline on different painterly looks; see README.md for sources and licences.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import skimage.data
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from artmator.pipeline.manifest import MANIFEST_SCHEMA

HERE = Path(__file__).resolve().parent
SIZE = 256
PUBLIC_DOMAIN_MARK = "https://creativecommons.org/publicdomain/mark/1.0/"
CC0 = "https://creativecommons.org/publicdomain/zero/1.0/"
ASTRONAUT_SOURCE = "https://flic.kr/p/r9qvLn"  # NASA Great Images, as cited by skimage.data.astronaut
CAMERA_SOURCE = "https://github.com/scikit-image/scikit-image/issues/3927"  # skimage.data.camera provenance
# Face-centred squares (left, top, right, bottom) in the 512x512 originals.
ASTRONAUT_FACE = (120, 10, 330, 220)
CAMERA_FACE = (125, 50, 305, 230)


def face_crop(pixels: np.ndarray, box: tuple[int, int, int, int]) -> Image.Image:
    return Image.fromarray(pixels).convert("RGB").crop(box).resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def poster(img: Image.Image) -> Image.Image:
    """Screen-print look: smooth, then 3 bits per channel."""
    return ImageOps.posterize(img.filter(ImageFilter.SMOOTH_MORE), 3)


def oil(img: Image.Image) -> Image.Image:
    """Impasto look: a mode filter merges brush-sized patches, edge enhancement outlines them."""
    return img.filter(ImageFilter.SMOOTH_MORE).filter(ImageFilter.ModeFilter(7)).filter(ImageFilter.EDGE_ENHANCE)


def gouache(img: Image.Image) -> Image.Image:
    """Flat-colour look: 12-colour palette without dithering, slightly saturated."""
    flat = img.filter(ImageFilter.MedianFilter(5)).quantize(colors=12, dither=Image.Dither.NONE).convert("RGB")
    return ImageEnhance.Color(flat).enhance(1.3)


def sepia_drawing(img: Image.Image) -> Image.Image:
    """Sepia wash: grey levels mapped onto brown ink and cream paper, softened, edges strengthened."""
    grey = ImageOps.autocontrast(img.convert("L").filter(ImageFilter.MedianFilter(3)).filter(ImageFilter.ModeFilter(5)))
    return ImageOps.colorize(grey, black="#2b1a0e", white="#f3e6c8").filter(ImageFilter.EDGE_ENHANCE)


STYLE_NOTE = {
    poster: "posterised (smoothing + 3-bit colour)",
    oil: "smoothing + mode filter (7 px) + edge enhancement",
    gouache: "median filter + 12-colour palette, no dithering",
    sepia_drawing: "median + mode filter (5 px) + sepia colourisation + edge enhancement",
}

ASTRONAUT = dict(artist="NASA (photograph); artmator demo filter", date="undated NASA photograph, filtered 2024",
                 rights=PUBLIC_DOMAIN_MARK, source_url=ASTRONAUT_SOURCE)
CAMERA = dict(artist="Lav Varshney (photograph); artmator demo filter", date="photograph, filtered 2024",
              rights=CC0, source_url=CAMERA_SOURCE)

# The demo images are already face crops: an explicit whole-image `crop` says so, and `artmator run` uses them as
# they are instead of detecting and re-cropping the face (what it does for rows without crop or face_align).
WHOLE = {"x": 0, "y": 0, "w": SIZE, "h": SIZE}
# (painting_id, source pixels, face box, style, yaw, pitch, crop, expressions, metadata, accession)
DEMO: list[tuple] = [
    ("demo-astronaut-poster", skimage.data.astronaut, ASTRONAUT_FACE, poster, 0.0, 0.0, WHOLE,
     ["happiness"], ASTRONAUT, "DEMO-0001"),
    ("demo-astronaut-oil", skimage.data.astronaut, ASTRONAUT_FACE, oil, 0.0, 0.0, WHOLE,
     ["happiness", "neutral"], ASTRONAUT, "DEMO-0002"),
    ("demo-astronaut-gouache", skimage.data.astronaut, ASTRONAUT_FACE, gouache, 0.0, 0.0, WHOLE,
     ["happiness"], ASTRONAUT, "DEMO-0003"),
    # Null pose: the cameraman is turned away from the viewer, so the pipeline must search his pose.
    ("demo-cameraman-sepia", skimage.data.camera, CAMERA_FACE, sepia_drawing, None, None, WHOLE,
     ["happiness"], CAMERA, "DEMO-0004"),
]


def credit(source: Callable, style: Callable) -> str:
    if source is skimage.data.astronaut:
        origin = ("Photograph of astronaut Eileen Collins, NASA, public domain, "
                  "from scikit-image (skimage.data.astronaut)")
    else:
        origin = "Photograph by Lav Varshney, CC0, from scikit-image (skimage.data.camera)"
    return f"{origin}; face crop {STYLE_NOTE[style]} with Pillow by manifests/demo/make_demo.py"


def main(out_dir: Path = HERE) -> Path:
    rows = []
    for pid, source, box, style, yaw, pitch, crop, exps, meta, accession in DEMO:
        name = f"{pid.removeprefix('demo-').replace('-', '_')}.png"
        # A 64-colour palette keeps the PNGs small (tens of KB) without visibly changing the styles.
        painted = style(face_crop(source(), box)).quantize(colors=64, dither=Image.Dither.NONE)
        painted.save(out_dir / name, optimize=True)
        sitter = "Astronaut" if source is skimage.data.astronaut else "Cameraman"
        title = f"{sitter} ({style.__name__.replace('_', ' ')})"
        rows.append(dict(painting_id=pid, image_uri=name, yaw_deg=yaw, pitch_deg=pitch, crop=crop, title=title,
                         credit_line=credit(source, style), expressions=exps, accession_number=accession, **meta))
    schema = MANIFEST_SCHEMA.append(pa.field("accession_number", pa.string()))
    path = out_dir / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


if __name__ == "__main__":
    print(main())
