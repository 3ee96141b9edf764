"""Turning a museum's painting file into the backbone's input tensor, and renders back into image files.

Every painting is independent: anything wrong with one file raises a single `PaintingImageError` whose `kind`
is machine-readable (the run report groups by it) and whose message names the file and says what to do.

Decoding (`decode_painting`) never changes Pillow's global state: the pixel limit is checked from the header
before any pixel is decoded, truncated files are refused (Pillow's `LOAD_TRUNCATED_IMAGES` is left alone, and
must stay False in this process for truncation to be caught), and only the raster formats in
`ImageConfig.formats` are parsed. The image is fully decoded, EXIF orientation is applied, an embedded ICC
profile is converted to sRGB, and the Pillow mode is turned into 8-bit RGB by this rule:

=============  ==================================================================================================
Pillow mode    Rule to 8-bit RGB (B = ImageConfig.background)
=============  ==================================================================================================
1              bilevel: 0 -> black, 1 -> white
L              grey value copied to R, G and B
LA, La         alpha composited over B (La is un-premultiplied first)
P, PA          palette looked up; transparency (tRNS entry or PA alpha) composited over B
RGB            unchanged; a tRNS colour key becomes transparent and is composited over B
RGBA, RGBa     alpha composited over B (RGBa is un-premultiplied first): out = a*c + (1-a)*B
RGBX           padding channel dropped
CMYK           embedded ICC profile -> sRGB if present, else uncalibrated R = (255-C)(255-K)/255 (same for G, B)
YCbCr          ITU-R BT.601 (JPEG) YCbCr -> RGB
HSV            HSV -> RGB
LAB            CIELAB (D50, a/b offset by 128 as Pillow stores them) -> sRGB through littleCMS
I;16, I;16B,   16-bit grey: round(v / 257), so 0 -> 0 and 65535 -> 255
I;16L, I;16N
I              32-bit integer grey: values within 0..65535 are treated as 16-bit (round(v / 257)); any other
               range is stretched linearly from [min, max] to [0, 255]
F              32-bit float grey: values within [0, 1] map to round(v * 255); any other range is stretched
               linearly from [min, max] of the finite values to [0, 255]; NaN and +-inf become 0
=============  ==================================================================================================

An embedded ICC profile is honoured for RGB, RGBA and CMYK images (perceptual intent to sRGB, the colour
space the backbone was trained in); a profile that cannot be read or used is ignored, as browsers do.
Animated images (GIF, WebP, APNG) contribute their first frame only (for APNG, the default image); multi-page
TIFF and multi-picture JPEG (MPO) their first page. A constant I or F image outside the ranges above is black.
"""
from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from artmator.model.faces.align import FaceAlignment, FaceFraming, warp_aligned
from artmator.model.fields import setting
from artmator.model.weights import read_bytes

ERROR_KINDS = ("empty", "not_found", "unreadable", "truncated", "not_an_image", "too_large", "too_small",
               "bad_crop")

PadMode = Literal["constant", "edge", "reflect"]
PAD_MODES = get_args(PadMode)

# Magic numbers of the supported raster formats: a file that starts like one of these but cannot be parsed is
# damaged ("unreadable"/"truncated"), not "not_an_image".
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"), (b"\x00\x00\x00\x0cjP  ", "JPEG2000"),
    (b"\xff\x4f\xff\x51", "JPEG2000"),
)

_16_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_EXIF_ORIENTATION = 0x0112


class PaintingImageError(ValueError):
    """A painting file that cannot be used. `kind` is one of ERROR_KINDS; `source` names the file."""

    def __init__(self, kind: str, source: str, detail: str):
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown PaintingImageError kind {kind!r}; kinds are {ERROR_KINDS}")
        super().__init__(f"{source}: {detail}")
        self.kind = kind
        self.source = source
        self.detail = detail

    def __reduce__(self):  # keeps kind/source across processes (Ray pickles exceptions)
        return (type(self), (self.kind, self.source, self.detail))


@dataclass(frozen=True)
class ImageConfig:
    """How painting files are decoded, checked and fitted into the backbone's square input."""

    background: tuple[int, int, int] = setting(
        (255, 255, 255), "R,G,B colour that transparency is composited on, and the padding colour when pad_mode is "
                         "'constant'.")
    max_pixels: int = setting(
        40_000_000, "Decompression-bomb limit on width * height, checked from the header before pixels are "
                    "decoded. Pillow's own refusal above 2 * Image.MAX_IMAGE_PIXELS (~179 M) applies too and is "
                    "reported as too_large.")
    min_side: int = setting(32, "Smallest accepted width or height (of the image, and of a crop box): below it there "
                                "is no face to fit.")
    max_bytes: int = setting(200 * 1024 * 1024, "Largest accepted file size in bytes.")
    pad_mode: PadMode = setting("constant", "How the shorter side is filled up to a square after the aspect-preserving "
                                        "resize: 'constant' (the background colour), 'edge' (repeat the border "
                                        "pixels) or 'reflect' (mirror the image at its border).")
    color_manage: bool = setting(True, "Convert images with an embedded ICC profile (RGB, RGBA, CMYK) to sRGB.")
    formats: tuple[str, ...] = setting(("JPEG", "PNG", "TIFF", "WEBP", "GIF", "BMP", "JPEG2000"),
                                       "Pillow format ids that are parsed at all (JPEG includes multi-picture MPO); "
                                       "others are not_an_image.")
    find_faces: bool = setting(True, "Rows without crop or face_align are whole paintings: detect the face and cut "
                                     "out the backbone's training crop. Off: such images already are face crops, "
                                     "used whole.")

    def __post_init__(self):
        if len(self.background) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in self.background):
            raise ValueError(f"ImageConfig.background must be three ints in 0..255, got {self.background!r}")
        for name in ("max_pixels", "min_side", "max_bytes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"ImageConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"ImageConfig.pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")
        Image.init()
        unknown = [f for f in self.formats if f not in Image.OPEN]
        if not self.formats or unknown:
            raise ValueError(f"ImageConfig.formats must be non-empty Pillow format ids; unknown: {unknown}; "
                             f"this Pillow reads {sorted(Image.OPEN)}")


# --------------------------------------------------------------------------------------------------- decoding

def decode_painting(data: bytes, source: str, config: ImageConfig = ImageConfig()) -> Image.Image:
    """Decode a painting file's bytes into an 8-bit RGB image (EXIF-upright), or raise PaintingImageError."""
    return decode_bounded(data, source, config)[0]


def decode_bounded(data: bytes, source: str, config: ImageConfig = ImageConfig(), max_side: int | None = None
                   ) -> tuple[Image.Image, tuple[int, int]]:
    """Like `decode_painting`, but at most `max_side` pixels on the longer side: (image, full upright size).

    JPEGs are decoded at a reduced DCT scale (Pillow's draft mode), so a multi-gigapixel master costs what its
    reduced copy costs and the pixel limit applies to what is actually decoded; other formats are decoded in
    full (within the pixel limit) and then reduced. Coordinates in the returned image times
    full_size / image.size are coordinates in the full image.
    """
    if len(data) == 0:
        raise PaintingImageError("empty", source, "the file is empty (0 bytes); upload the image again.")
    if len(data) > config.max_bytes:
        raise PaintingImageError("too_large", source, f"the file is {len(data):,} bytes, over the limit of "
                                 f"{config.max_bytes:,} (ImageConfig.max_bytes); export a smaller JPEG or PNG.")
    image = _open_header(data, source, config)
    full = image.size
    if max_side is not None and image.format in ("JPEG", "MPO") and max(full) > max_side:
        image.draft(image.mode if image.mode in ("RGB", "L") else None, (max_side, max_side))
    _check_size(image.size, source, config)
    _load_pixels(image, data, source, config)
    image = _upright(image)
    if _transposes(full, image):
        full = (full[1], full[0])
    if config.color_manage:
        image = _to_srgb(image)
    image = to_rgb(image, config.background)
    if max_side is not None and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image, full


def _transposes(size: tuple[int, int], upright: Image.Image) -> bool:
    """Whether EXIF orientation swapped width and height (compared by aspect, as draft mode scales both)."""
    w, h = size
    uw, uh = upright.size
    return w != h and (w > h) != (uw > uh)


def _open_header(data: bytes, source: str, config: ImageConfig) -> Image.Image:
    """Parse only the header (Pillow is lazy here), mapping every failure to a PaintingImageError."""
    try:
        return Image.open(io.BytesIO(data), formats=list(config.formats))
    except Image.DecompressionBombError as exc:
        raise _too_large(source, config, f"Pillow refused it: {str(exc).rstrip('.')}") from exc
    except UnidentifiedImageError as exc:
        raise _unidentified(data, source, config) from exc
    except Exception as exc:  # noqa: BLE001 - plugins raise many types on hostile bytes; all mean "damaged"
        raise _damaged(data, source, exc) from exc


def _check_size(size: tuple[int, int], source: str, config: ImageConfig) -> None:
    w, h = size
    if w * h > config.max_pixels:
        raise _too_large(source, config, f"{w}x{h} = {w * h:,} pixels")
    if min(w, h) < config.min_side:
        raise PaintingImageError("too_small", source, f"the image is {w}x{h} pixels; both sides must be at "
                                 f"least {config.min_side} (ImageConfig.min_side); supply a larger scan.")


def _load_pixels(image: Image.Image, data: bytes, source: str, config: ImageConfig) -> None:
    """Decode every pixel now, so a truncated or corrupt file fails here rather than later, half-grey."""
    try:
        image.load()
    except Image.DecompressionBombError as exc:  # some formats only know the real size of a frame on load
        raise _too_large(source, config, f"Pillow refused it: {str(exc).rstrip('.')}") from exc
    except Exception as exc:  # noqa: BLE001 - see _open_header
        raise _damaged(data, source, exc) from exc


def _too_large(source: str, config: ImageConfig, what: str) -> PaintingImageError:
    return PaintingImageError("too_large", source, f"the image is too large to decode safely ({what}; limit "
                              f"{config.max_pixels:,} pixels, ImageConfig.max_pixels); export a smaller version.")


def _unidentified(data: bytes, source: str, config: ImageConfig) -> PaintingImageError:
    looks_like = _sniff_non_image(data)
    if looks_like:
        return PaintingImageError("not_an_image", source, f"the file is {looks_like}, not a raster image; "
                                  f"supply a JPEG, PNG or TIFF of the painting.")
    fmt = _magic_format(data)
    if fmt and fmt not in config.formats:
        return PaintingImageError("not_an_image", source, f"the file is a {fmt} image, which is not among the "
                                  f"accepted formats ({', '.join(config.formats)}); convert it to JPEG, PNG or TIFF.")
    if fmt:
        return PaintingImageError("unreadable", source, f"the file starts like a {fmt} image but its header is "
                                  f"damaged or cut short; re-export or re-upload it.")
    return PaintingImageError("not_an_image", source, f"the file is not an image in a supported format "
                              f"({', '.join(config.formats)}); convert it to JPEG, PNG or TIFF.")


def _damaged(data: bytes, source: str, exc: Exception) -> PaintingImageError:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, EOFError) or "truncated" in str(exc).lower() or _riff_short(data):
        return PaintingImageError("truncated", source, f"the file ends before the image data does ({detail}); "
                                  f"it was probably cut off in transfer: upload it again.")
    return PaintingImageError("unreadable", source, f"the image data is damaged or uses an unsupported "
                              f"encoding ({detail}); re-export it as JPEG, PNG or TIFF.")


def _riff_short(data: bytes) -> bool:
    # WebP (RIFF) declares its length up front; libwebp itself only says "could not create decoder object".
    return data[:4] == b"RIFF" and len(data) >= 8 and len(data) < int.from_bytes(data[4:8], "little") + 8


def _magic_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _MAGIC if data.startswith(magic)), None)


def _sniff_non_image(data: bytes) -> str | None:
    """Name what a non-image file looks like (markup, PDF, text), for a message the user can act on."""
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"%pdf"):
        return "a PDF document"
    if head.startswith(b"<"):
        if b"<svg" in head:
            return "an SVG (vector) drawing"
        if b"<html" in head or b"<!doctype html" in head:
            return "an HTML page (often an error or login page saved instead of the image)"
        return "XML or other markup"
    try:
        text = data[:2048].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "plain text" if text and all(c.isprintable() or c.isspace() for c in text) else None


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; unreadable EXIF is ignored (viewers show such files as stored)."""
    try:
        if image.getexif().get(_EXIF_ORIENTATION, 1) == 1:
            return image  # the common case: skip exif_transpose's full-size copy
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - pixels are already decoded; only the metadata is bad
        return image


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert RGB/RGBA/CMYK with an embedded ICC profile to sRGB; an unusable profile is ignored."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    out_mode = "RGBA" if image.mode == "RGBA" else "RGB"
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode=out_mode)
    except (OSError, ImageCms.PyCMSError, ValueError, TypeError):
        return image


# ------------------------------------------------------------------------------------- mode -> RGB conversion

def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """8-bit RGB by the module's conversion table (alpha composited over `background`)."""
    mode = image.mode
    if mode in _16_BIT_MODES or mode in ("I", "F"):
        return Image.fromarray(_grey_to_8bit(image), "L").convert("RGB")
    if mode == "LAB":
        return ImageCms.profileToProfile(image, ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"),
                                         outputMode="RGB")
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or image.has_transparency_data:
        if mode == "La":  # Pillow converts premultiplied La only to LA
            image = image.convert("LA")
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return image if mode == "RGB" else image.convert("RGB")


def _grey_to_8bit(image: Image.Image) -> np.ndarray:
    """(H, W) uint8 from a 16-bit, 32-bit integer or float greyscale image (rules in the module table)."""
    a = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        a = np.where(np.isfinite(a), a, np.nan)
        lo, hi = (np.nanmin(a), np.nanmax(a)) if not np.all(np.isnan(a)) else (0.0, 0.0)
        a = a * 255.0 if 0.0 <= lo and hi <= 1.0 else _stretch(a, lo, hi)
        a = np.nan_to_num(a, nan=0.0)
    else:
        lo, hi = a.min(), a.max()
        a = a / 257.0 if 0 <= lo and hi <= 65535 else _stretch(a, lo, hi)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _stretch(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)


# ----------------------------------------------------------------------------------------- fitting to a square

def prepare_painting(image: Image.Image, resolution: int, crop: tuple[int, int, int, int] | None = None,
                     config: ImageConfig = ImageConfig(), *, source: str = "<in-memory image>",
                     alignment: FaceAlignment | None = None, framing: FaceFraming = FaceFraming()) -> torch.Tensor:
    """Crop, fit and normalise an RGB painting into the backbone's input: (1, 3, R, R) float32 in [-1, 1].

    crop: (x, y, w, h) in pixels of the upright (EXIF-corrected) image, e.g. a box around the face.
    The image is resized (Lanczos) so its longer side is `resolution`, keeping its proportions, and the shorter
    side is padded symmetrically (the odd pixel goes right/bottom) per `config.pad_mode`; the face is expected
    centred, as in the backbone's training crops.
    alignment: the face's training crop (`model.faces.align`), a rotated square warped upright instead; it
    excludes `crop`.
    framing: where the backbone renders a face's training crop (`Backbone.face_framing`). Unless it is the
    crop itself, the face square (the alignment, else the crop box or whole image as a square around its
    centre) is widened to the window that puts the face there: real painting around it where there is some,
    else the median colour of the painting's outer border (a plain backdrop the render can match).
    """
    _check_prepare_inputs(image, resolution)
    if alignment is None and not framing.is_identity:
        if crop is not None:
            left, top, right, bottom = _crop_box(crop, image.size, source, config)
        else:
            left, top, (right, bottom) = 0, 0, image.size
        alignment, crop = FaceAlignment((left + right) / 2, (top + bottom) / 2, max(right - left, bottom - top)), None
    if alignment is not None:
        if crop is not None:
            raise ValueError("give a crop box or a face alignment, not both")
        if framing.is_identity:
            square = np.asarray(warp_aligned(image, alignment, resolution))  # (R, R, 3) uint8
        else:
            square = np.asarray(warp_aligned(image, framing.window_for(alignment), resolution,
                                             fill=border_colour(image)))
    else:
        if crop is not None:
            image = image.crop(_crop_box(crop, image.size, source, config))
        square = _fit_square(image, resolution, config)  # (R, R, 3) uint8
    scaled = square.transpose(2, 0, 1).astype(np.float32) / np.float32(127.5) - np.float32(1.0)  # (3, R, R)
    return torch.from_numpy(np.ascontiguousarray(scaled)).unsqueeze(0)  # (1, 3, R, R)


def border_colour(image: Image.Image, width: float = 0.03) -> tuple[int, int, int]:
    """Median RGB of the outer `width` (fraction of the shorter side, at least 1 px) of an RGB image."""
    a = np.asarray(image)
    k = max(1, round(width * min(a.shape[:2])))
    ring = np.concatenate([a[:k].reshape(-1, 3), a[-k:].reshape(-1, 3), a[:, :k].reshape(-1, 3),
                           a[:, -k:].reshape(-1, 3)])
    return tuple(int(v) for v in np.median(ring, axis=0))


def _check_prepare_inputs(image: Image.Image, resolution: int) -> None:
    if not isinstance(image, Image.Image) or image.mode != "RGB":
        got = f"a {image.mode} image" if isinstance(image, Image.Image) else type(image).__name__
        raise TypeError(f"prepare_painting needs an RGB PIL image (use decode_painting), got {got}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")


def _crop_box(crop, size: tuple[int, int], source: str, config: ImageConfig) -> tuple[int, int, int, int]:
    """Validate an (x, y, w, h) crop against the image size; returns Pillow's (left, top, right, bottom)."""
    width, height = size
    if (not isinstance(crop, (tuple, list)) or len(crop) != 4
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in crop)):
        raise PaintingImageError("bad_crop", source, f"crop must be four integers (x, y, w, h) in pixels, got "
                                 f"{crop!r}; fix the crop in the manifest.")
    x, y, w, h = (int(v) for v in crop)
    if w < config.min_side or h < config.min_side:
        problem = f"its size {w}x{h} is below {config.min_side} pixels (ImageConfig.min_side)"
    elif x < 0 or y < 0 or x + w > width or y + h > height:
        problem = f"it reaches outside the {width}x{height} image (after EXIF rotation)"
    else:
        return (x, y, x + w, y + h)
    raise PaintingImageError("bad_crop", source, f"crop (x={x}, y={y}, w={w}, h={h}) is invalid: {problem}; "
                             f"fix the crop in the manifest (pixels of the upright image).")


def _fit_square(image: Image.Image, resolution: int, config: ImageConfig) -> np.ndarray:
    """(R, R, 3) uint8: aspect-preserving Lanczos resize to a longer side of R, then symmetric padding."""
    w, h = image.size
    scale = resolution / max(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    # reducing_gap: a cheap box pre-reduction for big downscales; results stay within ~1 level of pure Lanczos.
    resized = np.asarray(image.resize((new_w, new_h), Image.Resampling.LANCZOS, reducing_gap=3.0))
    pad_y, pad_x = resolution - new_h, resolution - new_w
    pad = ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0))
    if config.pad_mode == "constant":
        out = np.empty((resolution, resolution, 3), np.uint8)
        out[:] = np.asarray(config.background, np.uint8)
        out[pad[0][0]:pad[0][0] + new_h, pad[1][0]:pad[1][0] + new_w] = resized
        return out
    return np.pad(resized, pad, mode=config.pad_mode)


# ------------------------------------------------------------------------------------------------- entry point

def load_painting(uri: str, resolution: int, crop: tuple[int, int, int, int] | None = None,
                  config: ImageConfig = ImageConfig(), storage_options: Mapping | None = None,
                  alignment: FaceAlignment | None = None, framing: FaceFraming = FaceFraming()) -> torch.Tensor:
    """Read (local path or fsspec URI), decode and prepare one painting: (1, 3, R, R) float32 in [-1, 1]."""
    image = read_painting(uri, config, storage_options)
    return prepare_painting(image, resolution, crop, config, source=uri, alignment=alignment, framing=framing)


def read_painting(uri: str, config: ImageConfig = ImageConfig(), storage_options: Mapping | None = None
                  ) -> Image.Image:
    """Read (local path or fsspec URI) and decode one painting into an upright 8-bit RGB image."""
    return decode_painting(fetch_painting(uri, storage_options), uri, config)


def fetch_painting(uri: str, storage_options: Mapping | None = None, timeout_s: float | None = None) -> bytes:
    """A painting file's bytes; a missing file is PaintingImageError `not_found`, an outage a ConnectionError,
    an http(s) server silent for `timeout_s` a TimeoutError (`model.weights.read_bytes`)."""
    try:
        data = read_bytes(uri, storage_options, timeout_s)
    except FileNotFoundError as exc:
        cause: BaseException | None = exc
        for _ in range(8):  # fsspec may wrap the FileNotFoundError it raises into another one
            if not isinstance(cause, FileNotFoundError):
                break
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, OSError):
            # fsspec's HTTP filesystem reports an unreachable host as FileNotFoundError; it is a storage outage
            # (retried, and redone by the next run), not a missing file.
            raise ConnectionError(f"{uri}: the host could not be reached ({type(cause).__name__}: {cause})") from exc
        raise PaintingImageError("not_found", uri, "no such file; check the path in the manifest.") from exc
    except (PermissionError, IsADirectoryError, NotADirectoryError, ValueError) as exc:  # retrying cannot help
        raise PaintingImageError("unreadable", uri, f"the file could not be read ({type(exc).__name__}: {exc}); "
                                 f"check the URI, permissions and storage_options.") from exc
    # Any other OSError (timeouts, resets, 5xx from an object store) propagates: the pipeline retries it as a
    # transient storage error and a later run redoes the painting, instead of recording it as a bad image.
    return data


# ----------------------------------------------------------------------------------------- tensors -> images

def to_pil(image: torch.Tensor) -> Image.Image:
    """An RGB PIL image from a (3, H, W) or (1, 3, H, W) tensor in [-1, 1] (values clamped, then rounded)."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"to_pil needs a torch.Tensor, got {type(image).__name__}")
    t = image.detach().to("cpu", torch.float32)
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"to_pil needs a (3, H, W) or (1, 3, H, W) tensor, got shape {tuple(image.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError("to_pil got NaN or infinite values; the render diverged")
    pixels = ((t.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)  # (3, H, W)
    return Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy(), "RGB")


def to_png_bytes(image: torch.Tensor | Image.Image, xmp: bytes | None = None) -> bytes:
    """PNG file bytes of a (3, H, W)/(1, 3, H, W) tensor in [-1, 1] or a PIL image (for writing renders); `xmp`: an
    XMP packet, stored as the iTXt chunk `XML:com.adobe.xmp` (where XMP readers look for it in a PNG)."""
    pil = image if isinstance(image, Image.Image) else to_pil(image)
    buffer = io.BytesIO()
    pil.save(buffer, "PNG", pnginfo=png_xmp_info(xmp) if xmp else None)
    return buffer.getvalue()


def png_xmp_info(xmp: bytes):
    """PngInfo holding an XMP packet as uncompressed iTXt `XML:com.adobe.xmp` (Pillow's PNG writer has no xmp=)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"), zip=False)
    return info
