"""Turntable encoders: frames in, bytes out (pure; also called by the pipeline when it commits a painting).

Sharing formats (WebM, MP4, animated WebP) play the turntable forward then back ("ping-pong": frames
0..N-1 then N-2..1) so that a looping player never jumps from the last yaw back to the first. The
interactive viewer does not use them: it scrubs a sprite of the original N frames (`frame_sprite`).
"""
from __future__ import annotations

import io
import math
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, Sequence

import av
from PIL import Image

BACKGROUND = (255, 255, 255)
"""Colour that transparent pixels are flattened onto: none of the formats here keep alpha everywhere."""


@dataclass(frozen=True)
class VideoSettings:
    """Encoder quality knobs. Defaults keep a 36-frame 256² turntable far below 1 MB in both codecs."""

    vp9_crf: int = 32
    h264_crf: int = 23
    webp_quality: int = 80


DEFAULT_SETTINGS = VideoSettings()


def ping_pong(frames: Sequence[Image.Image]) -> list[Image.Image]:
    """Frames forward then back without repeating either end: [0..N-1, N-2..1]."""
    frames = list(frames)
    return frames + frames[-2:0:-1] if len(frames) > 2 else frames


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, BACKGROUND)
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def _even(image: Image.Image) -> Image.Image:
    """yuv420p subsamples chroma 2x2, so both dimensions must be even: pad the odd edge with its own pixels."""
    w, h = image.size
    if w % 2 == 0 and h % 2 == 0:
        return image
    padded = Image.new("RGB", (w + w % 2, h + h % 2), BACKGROUND)
    padded.paste(image, (0, 0))
    if w % 2:
        padded.paste(image.crop((w - 1, 0, w, h)), (w, 0))
    if h % 2:
        padded.paste(padded.crop((0, h - 1, w + w % 2, h)), (0, h))
    return padded


def _check(frames: Sequence[Image.Image], fps: float) -> None:
    if not frames:
        raise ValueError("no frames to encode")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    sizes = {f.size for f in frames}
    if len(sizes) != 1:
        raise ValueError(f"frames differ in size: {sorted(sizes)}")


def _encode(frames: Sequence[Image.Image], fps: float, container: str, codec: str,
            options: dict[str, str], container_options: dict[str, str] | None = None,
            tags: Mapping[str, str] | None = None) -> bytes:
    _check(frames, fps)
    prepared = [_even(_rgb(f)) for f in ping_pong(frames)]
    # Rates must be rational; 1/1000 precision is plenty for turntable fps.
    rate = Fraction(fps).limit_denominator(1000)
    # A real file, not BytesIO: MP4's faststart pass re-opens the output by name to move the index forward.
    with tempfile.TemporaryDirectory(prefix="artmator-video-") as tmp:
        path = os.path.join(tmp, f"turntable.{container}")
        _mux(path, prepared, rate, container, codec, options, container_options or {}, tags or {})
        with open(path, "rb") as handle:
            return handle.read()


def _mux(path: str, prepared: list[Image.Image], rate: Fraction, container: str, codec: str,
         options: dict[str, str], container_options: dict[str, str], tags: Mapping[str, str]) -> None:
    with av.open(path, mode="w", format=container, options=container_options) as out:
        out.metadata.update(tags)
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = prepared[0].size
        stream.pix_fmt = "yuv420p"
        stream.options = options
        for image in prepared:
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def encode_webm(frames: Sequence[Image.Image], fps: float,
                settings: VideoSettings = DEFAULT_SETTINGS, tags: Mapping[str, str] | None = None) -> bytes:
    """VP9 WebM of the ping-ponged turntable (constant quality, `crf`, no bitrate cap); `tags`: Matroska
    SimpleTags of the segment (Matroska has no XMP)."""
    return _encode(frames, fps, "webm", "libvpx-vp9",
                   {"crf": str(settings.vp9_crf), "b": "0", "deadline": "good", "cpu-used": "4",
                    "row-mt": "1"}, tags=tags)


def encode_mp4(frames: Sequence[Image.Image], fps: float,
               settings: VideoSettings = DEFAULT_SETTINGS, tags: Mapping[str, str] | None = None,
               xmp_box: bytes = b"") -> bytes:
    """H.264 MP4 (yuv420p, even dimensions, moov atom first) of the ping-ponged turntable.

    Main profile and faststart so that every browser and social site plays it while it downloads. `tags`: QuickTime
    `mdta` metadata keys (any name: `use_metadata_tags`); `xmp_box`: a whole top-level box appended after `mdat`
    (an XMP `uuid` box: no offset in `moov` moves)."""
    return _encode(frames, fps, "mp4", "libx264",
                   {"crf": str(settings.h264_crf), "preset": "medium", "profile": "main"},
                   container_options={"movflags": "+faststart" + ("+use_metadata_tags" if tags else "")},
                   tags=tags) + xmp_box


def encode_webp(frames: Sequence[Image.Image], fps: float,
                settings: VideoSettings = DEFAULT_SETTINGS, xmp: bytes | None = None) -> bytes:
    """Looping animated WebP of the ping-ponged turntable (Pillow's encoder); `xmp`: its XMP chunk."""
    _check(frames, fps)
    seq = [_rgb(f) for f in ping_pong(frames)]
    buf = io.BytesIO()
    seq[0].save(buf, format="WEBP", save_all=True, append_images=seq[1:], duration=round(1000 / fps),
                loop=0, quality=settings.webp_quality, method=4, **_xmp(xmp))
    return buf.getvalue()


def sprite_grid(count: int) -> tuple[int, int]:
    """(columns, rows) of a near-square grid: keeps sprites under image-format and GPU texture limits
    (WebP caps a side at 16383 px; a 36 x 256 px strip would already be 9216 px wide)."""
    if count < 1:
        raise ValueError("a sprite needs at least one frame")
    columns = math.ceil(math.sqrt(count))
    return columns, math.ceil(count / columns)


def frame_sprite(frames: Sequence[Image.Image]) -> Image.Image:
    """The original (not ping-ponged) frames in a row-major grid of `sprite_grid(len(frames))` cells."""
    _check(frames, 1.0)
    columns, rows = sprite_grid(len(frames))
    w, h = frames[0].size
    sheet = Image.new("RGB", (columns * w, rows * h), BACKGROUND)
    for i, frame in enumerate(frames):
        sheet.paste(_rgb(frame), ((i % columns) * w, (i // columns) * h))
    return sheet


def encode_sprite(frames: Sequence[Image.Image], quality: int = 85, xmp: bytes | None = None) -> bytes:
    """`frame_sprite` as lossy WebP: one request for the whole turntable, small enough for phones."""
    buf = io.BytesIO()
    frame_sprite(frames).save(buf, format="WEBP", quality=quality, method=4, **_xmp(xmp))
    return buf.getvalue()


def encode_png(image: Image.Image, xmp: bytes | None = None) -> bytes:
    """Optimised PNG (used for posters); `xmp` as its iTXt `XML:com.adobe.xmp` chunk."""
    from artmator.model.images import png_xmp_info

    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True, pnginfo=png_xmp_info(xmp) if xmp else None)
    return buf.getvalue()


def encode_thumbnail(image: Image.Image, max_side: int = 320, quality: int = 82, xmp: bytes | None = None) -> bytes:
    """Small WebP for the index grid."""
    thumb = _rgb(image).copy()
    thumb.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    thumb.save(buf, format="WEBP", quality=quality, method=4, **_xmp(xmp))
    return buf.getvalue()


def _xmp(xmp: bytes | None) -> dict:
    """Pillow's WebP writer keyword for an XMP chunk (none when there is no packet)."""
    return {"xmp": xmp} if xmp else {}
