"""Whole "paintings" with real faces for the face-aware tests: scikit-image's astronaut photograph (public
domain) filtered to look painted and placed on a larger canvas, as a museum's half-length portrait would be."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter, ImageOps


def painted_astronaut() -> Image.Image:
    import skimage.data

    photo = Image.fromarray(skimage.data.astronaut())                    # 512², face ~100 px wide
    return photo.filter(ImageFilter.ModeFilter(5)).filter(ImageFilter.SMOOTH_MORE)


def whole_painting(width: int = 1100, height: int = 900, scale: float = 1.0, at: tuple[int, int] = (330, 260),
                   mirror: bool = False, background=(92, 70, 48)) -> Image.Image:
    """A canvas with the painted astronaut somewhere on it (face a small part of the picture)."""
    sitter = painted_astronaut()
    if scale != 1.0:
        sitter = sitter.resize((round(512 * scale), round(512 * scale)), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height), background)
    rng = np.random.default_rng(0)
    texture = rng.normal(0, 9, (height, width, 1)).repeat(3, 2)
    canvas = Image.fromarray(np.clip(np.asarray(canvas, np.float64) + texture, 0, 255).astype(np.uint8))
    canvas.paste(sitter, at)
    return ImageOps.mirror(canvas) if mirror else canvas


def no_face_painting(size: int = 640) -> Image.Image:
    """A landscape-like picture without any face."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    sky = np.stack([0.45 + 0.3 * yy, 0.6 + 0.2 * yy, 0.9 - 0.2 * yy], -1)
    hills = (yy > 0.55 + 0.1 * np.sin(xx * 9)).astype(float)[..., None]
    img = sky * (1 - hills) + hills * np.array([0.25, 0.45, 0.2])
    return Image.fromarray((img * 255).astype(np.uint8))


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()
