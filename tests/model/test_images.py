"""model.images: painting files -> RGB -> the backbone's (1, 3, R, R) input, every failure a specific error."""
from __future__ import annotations

import io
import pickle
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageFile

from artmator.model.images import (
    ERROR_KINDS, ImageConfig, PaintingImageError, border_colour, decode_painting, load_painting, prepare_painting,
    to_pil,
    to_png_bytes, to_rgb,
)

WHITE = (255, 255, 255)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """Incompressible RGB, so truncating the encoded file always cuts into pixel data."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def pixel(image: Image.Image, xy=(0, 0)) -> tuple[int, int, int]:
    return tuple(image.getpixel(xy))


def composite(colour, alpha: int, background) -> tuple[int, ...]:
    return tuple(round(c * alpha / 255 + b * (255 - alpha) / 255) for c, b in zip(colour, background))


def close(a, b, tol: int = 1) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------------------- mode rules, through real files

def palette(transparent_index: int | None) -> Image.Image:
    """Left half palette index 0 (10, 20, 30), right half index 1 (red)."""
    im = Image.new("P", (40, 40), 0)
    im.putpalette([10, 20, 30, 255, 0, 0] + [0] * 762)
    im.paste(1, (20, 0, 40, 40))
    if transparent_index is not None:
        im.info["transparency"] = transparent_index
    return im


def grey16(value: int) -> Image.Image:
    return Image.fromarray(np.full((40, 40), value, np.uint16))  # mode I;16


def float_grey(values: list[float]) -> Image.Image:
    return Image.fromarray(np.array(values, np.float32).reshape(1, -1).repeat(40, 0).repeat(10, 1))  # mode F


def int32_grey(values: list[int]) -> Image.Image:
    return Image.fromarray(np.array(values, np.int32).reshape(1, -1).repeat(40, 0).repeat(10, 1))  # mode I


BLUE_BG = (0, 0, 255)

# (id, image, file format and save params, background, expected {(x, y): RGB})
MODE_CASES = [
    ("RGBA-half-red-over-white", Image.new("RGBA", (40, 40), (255, 0, 0, 128)), "PNG", WHITE,
     {(0, 0): composite((255, 0, 0), 128, WHITE)}),
    ("RGBA-transparent-takes-background", Image.new("RGBA", (40, 40), (255, 0, 0, 0)), "PNG", BLUE_BG,
     {(0, 0): BLUE_BG}),
    ("LA", Image.new("LA", (40, 40), (0, 64)), "PNG", WHITE, {(0, 0): composite((0, 0, 0), 64, WHITE)}),
    ("P-transparency", palette(0), "PNG", BLUE_BG, {(0, 0): BLUE_BG, (30, 5): (255, 0, 0)}),
    ("P-opaque", palette(None), "GIF", BLUE_BG, {(0, 0): (10, 20, 30), (30, 5): (255, 0, 0)}),
    ("RGB-colour-key", Image.new("RGB", (40, 40), (9, 9, 9)), ("PNG", {"transparency": (9, 9, 9)}), BLUE_BG,
     {(0, 0): BLUE_BG}),
    ("CMYK-red", Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "TIFF", WHITE, {(0, 0): (255, 0, 0)}),
    ("CMYK-half-black", Image.new("CMYK", (40, 40), (0, 0, 0, 128)), "TIFF", WHITE, {(0, 0): (127, 127, 127)}),
    ("I16-max", grey16(65535), "PNG", WHITE, {(0, 0): (255, 255, 255)}),
    ("I16-mid", grey16(200 * 257), "PNG", WHITE, {(0, 0): (200, 200, 200)}),
    ("I16-zero", grey16(0), "PNG", WHITE, {(0, 0): (0, 0, 0)}),
    ("I-16bit-range", int32_grey([0, 65535, 257 * 7, 0]), "TIFF", WHITE,
     {(0, 0): (0, 0, 0), (10, 0): (255,) * 3, (20, 0): (7,) * 3}),
    ("I-wide-range-stretched", int32_grey([-1000, 99000, 49000, 0]), "TIFF", WHITE,
     {(0, 0): (0, 0, 0), (10, 0): (255,) * 3, (20, 0): (128,) * 3}),
    ("F-unit-range", float_grey([0.0, 1.0, 0.25, 0.5]), "TIFF", WHITE,
     {(0, 0): (0, 0, 0), (10, 0): (255,) * 3, (20, 0): (64,) * 3}),
    ("F-wide-range-stretched", float_grey([-1.0, 3.0, 1.0, float("nan")]), "TIFF", WHITE,
     {(0, 0): (0, 0, 0), (10, 0): (255,) * 3, (20, 0): (128,) * 3, (30, 0): (0, 0, 0)}),
    ("L", Image.new("L", (40, 40), 77), "PNG", WHITE, {(0, 0): (77, 77, 77)}),
    ("1-white", Image.new("1", (40, 40), 1), "PNG", WHITE, {(0, 0): (255, 255, 255)}),
    ("1-black", Image.new("1", (40, 40), 0), "PNG", WHITE, {(0, 0): (0, 0, 0)}),
    ("LAB-mid-grey", Image.new("LAB", (40, 40), (128, 128, 128)), "TIFF", WHITE, {(0, 0): (119, 119, 119)}),
]


@pytest.mark.parametrize("name, image, fmt, background, expected", MODE_CASES, ids=[c[0] for c in MODE_CASES])
def test_each_mode_decodes_by_its_documented_rule(name, image, fmt, background, expected):
    fmt, params = fmt if isinstance(fmt, tuple) else (fmt, {})
    data = encode(image, fmt, **params)
    assert Image.open(io.BytesIO(data)).mode == image.mode, "the test file does not exercise this mode"
    out = decode_painting(data, f"{name}.{fmt.lower()}", ImageConfig(background=background))
    assert out.mode == "RGB" and out.size == image.size
    for xy, rgb in expected.items():
        assert close(pixel(out, xy), rgb, tol=2 if name.startswith("LAB") else 0), (xy, pixel(out, xy), rgb)


@pytest.mark.parametrize("mode, value, expected", [
    ("RGBa", (100, 0, 0, 128), (227, 127, 127)),  # premultiplied: out = c + (1 - a) * B = 100 + 127
    ("La", (10, 20), (245, 245, 245)),
    ("RGBX", (1, 2, 3, 0), (1, 2, 3)),
    ("YCbCr", (128, 128, 128), (128, 128, 128)),
    ("HSV", (0, 255, 255), (255, 0, 0)),
    ("PA", (0, 0), (255, 255, 255)),  # alpha 0 -> background
])
def test_modes_no_file_format_stores(mode, value, expected):
    out = to_rgb(Image.new(mode, (2, 2), value), WHITE)
    assert out.mode == "RGB" and close(pixel(out), expected), pixel(out)


# -------------------------------------------------------------------------------------------------- colour

def swapped_primaries_profile() -> bytes:
    """An RGB ICC profile whose red and green primaries are swapped, built from littleCMS's sRGB profile."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = int.from_bytes(icc[128:132], "big")
    entries = {bytes(icc[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, green = entries[b"rXYZ"], entries[b"gXYZ"]
    icc[red + 4:red + 12], icc[green + 4:green + 12] = icc[green + 4:green + 12], icc[red + 4:red + 12]
    return bytes(icc)


@pytest.mark.parametrize("color_manage, profile, expected", [
    (True, swapped_primaries_profile(), (0, 255, 0)),
    (False, swapped_primaries_profile(), (255, 0, 0)),
    (True, b"not an icc profile" * 10, (255, 0, 0)),  # unusable profiles are ignored, like browsers do
], ids=["converted", "color_manage-off", "garbage-profile-ignored"])
def test_embedded_icc_profile_converted_to_srgb(color_manage, profile, expected):
    data = encode(Image.new("RGB", (40, 40), (255, 0, 0)), "PNG", icc_profile=profile)
    out = decode_painting(data, "icc.png", ImageConfig(color_manage=color_manage))
    assert close(pixel(out), expected), pixel(out)


# -------------------------------------------------------------------------------------- orientation and frames

def sideways_jpeg() -> bytes:
    """80x40 as stored (left half blue, right half red), EXIF orientation 6: upright it is 40x80, blue on top."""
    im = Image.new("RGB", (80, 40), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(im, "JPEG", exif=exif.tobytes(), quality=95)


def test_exif_orientation_6_is_applied():
    out = decode_painting(sideways_jpeg(), "sideways.jpg")
    assert out.size == (40, 80)
    assert close(pixel(out, (20, 10)), (0, 0, 255), tol=4) and close(pixel(out, (20, 70)), (255, 0, 0), tol=4)


def test_crop_is_in_upright_coordinates():
    out = prepare_painting(decode_painting(sideways_jpeg(), "sideways.jpg"), 32, crop=(0, 0, 40, 40))
    rgb = (out[0, :, 4:28, 4:28] + 1) * 127.5  # inside, away from the JPEG edge
    assert rgb[2].min() > 240 and rgb[0].max() < 15


@pytest.mark.parametrize("fmt, params", [
    ("GIF", {}), ("WEBP", {"lossless": True}), ("PNG", {}),  # PNG with append_images is APNG
])
def test_animated_images_use_the_first_frame(fmt, params):
    frames = [Image.new("RGB", (40, 40), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **params)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert close(pixel(decode_painting(data, f"anim.{fmt.lower()}")), (255, 0, 0))


# ------------------------------------------------------------------------------------------- crop, fit, pad

def test_landscape_is_centred_and_padded_with_background():
    out = prepare_painting(Image.new("RGB", (200, 100), (255, 0, 0)), 64, config=ImageConfig(background=(0, 255, 0)))
    assert out.shape == (1, 3, 64, 64) and out.dtype == torch.float32
    img = out[0]
    green, red = torch.tensor([-1.0, 1.0, -1.0]), torch.tensor([1.0, -1.0, -1.0])
    for rows, colour in [(slice(0, 16), green), (slice(16, 48), red), (slice(48, 64), green)]:
        assert torch.allclose(img[:, rows, :], colour[:, None, None].expand_as(img[:, rows, :]), atol=1e-6)


def test_odd_padding_puts_the_extra_pixel_last():
    # 64x61 -> R=64: 3 rows of padding, 1 on top and 2 below.
    out = prepare_painting(Image.new("RGB", (64, 61), (0, 0, 0)), 64)[0]
    row_is_white = (out == 1.0).all(dim=0).all(dim=1)
    assert row_is_white.tolist() == [True] + [False] * 61 + [True, True]


def test_portrait_is_padded_left_and_right():
    out = prepare_painting(Image.new("RGB", (100, 200), (0, 0, 0)), 32)[0]
    column_is_white = (out == 1.0).all(dim=0).all(dim=0)
    assert column_is_white.tolist() == [True] * 8 + [False] * 16 + [True] * 8


@pytest.mark.parametrize("pad_mode, same_rows", [
    ("edge", [(0, 10), (9, 10), (39, 29)]),        # padding repeats the first/last content row
    ("reflect", [(9, 11), (0, 20), (30, 28)]),     # padding mirrors the content about its border row
])
def test_edge_and_reflect_padding_repeat_content(pad_mode, same_rows):
    im = Image.new("RGB", (100, 50), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 100, 25))  # top half blue, bottom half red
    out = prepare_painting(im, 40, config=ImageConfig(pad_mode=pad_mode))[0]  # content in rows 10..29
    for padded, content in same_rows:
        assert torch.equal(out[:, padded], out[:, content]), (padded, content)
    assert (out[2, 5] > 0.9).all() and (out[:2, 5] < -0.9).all()  # blue content repeated, not white background


def test_crop_selects_the_box_then_fits_it():
    im = Image.new("RGB", (300, 200), (255, 255, 255))
    im.paste((0, 0, 255), (100, 50, 180, 130))  # an 80x80 blue "face"
    out = prepare_painting(im, 64, crop=(100, 50, 80, 80))
    assert torch.allclose(out[0], torch.tensor([-1.0, -1.0, 1.0])[:, None, None].expand(3, 64, 64), atol=1e-6)


def test_downscale_is_antialiased():
    # A 1-pixel checkerboard must average to grey, not alias into stripes.
    checker = (np.indices((512, 512)).sum(0) % 2 * 255).astype(np.uint8)
    out = prepare_painting(Image.fromarray(checker).convert("RGB"), 64)
    assert out.std().item() < 0.05 and abs(out.mean().item()) < 0.05


def test_prepare_validates_its_inputs():
    with pytest.raises(TypeError, match="RGB PIL image"):
        prepare_painting(Image.new("L", (64, 64)), 64)
    with pytest.raises(TypeError, match="RGB PIL image"):
        prepare_painting(np.zeros((64, 64, 3), np.uint8), 64)
    with pytest.raises(ValueError, match="resolution"):
        prepare_painting(Image.new("RGB", (64, 64)), 0)


@pytest.mark.parametrize("crop, why", [
    ((0, 0, 0, 50), "below 32"), ((-1, 0, 50, 50), "outside"), ((60, 0, 50, 50), "outside"),
    ((0, 60, 50, 50), "outside"), ((0, 0, 100, 101), "outside"), ((0, 0, 10, 10), "below 32"),
    ((0, 0, 50), "four integers"), ((0, 0, 50.0, 50), "four integers"), ((0, 0, True, 50), "four integers"),
])
def test_bad_crop(crop, why):
    with pytest.raises(PaintingImageError, match=why) as err:
        prepare_painting(Image.new("RGB", (100, 100)), 64, crop=crop, source="s3://museum/p1.jpg")
    assert err.value.kind == "bad_crop" and "s3://museum/p1.jpg" in str(err.value)


# ----------------------------------------------------------------------------------------------- error kinds

def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header declares width x height RGB pixels (the IDAT is a few bytes)."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def truncated(fmt: str, **params) -> bytes:
    data = encode(noise(300, 200), fmt, **params)
    return data[: len(data) // 2]


def corrupt(data: bytes, offset: int) -> bytes:
    """Flip one byte (29: inside the PNG's IHDR checksum; 60: inside its compressed pixel data)."""
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:]


ERROR_CASES = [
    ("empty", b"", ImageConfig(), "empty"),
    ("html", b"<!DOCTYPE html><html><body>403 Forbidden</body></html>", ImageConfig(), "not_an_image"),
    ("svg", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10"/>', ImageConfig(),
     "not_an_image"),
    ("text", "Mona Lisa, oil on poplar\n".encode(), ImageConfig(), "not_an_image"),
    ("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", ImageConfig(), "not_an_image"),
    ("random-bytes", bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8)), ImageConfig(),
     "not_an_image"),
    ("format-not-allowed", encode(noise(40, 40), "BMP"), ImageConfig(formats=("PNG", "JPEG")), "not_an_image"),
    ("truncated-jpeg", truncated("JPEG", quality=95), ImageConfig(), "truncated"),
    ("truncated-png", truncated("PNG"), ImageConfig(), "truncated"),
    ("truncated-webp", truncated("WEBP", lossless=True), ImageConfig(), "truncated"),
    ("png-chunk-longer-than-file", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20, ImageConfig(), "truncated"),
    ("png-bad-header-checksum", corrupt(encode(noise(40, 40), "PNG"), 29), ImageConfig(), "unreadable"),
    ("png-bad-pixel-data", corrupt(encode(noise(40, 40), "PNG"), 60), ImageConfig(), "unreadable"),
    ("bomb-header-20000", png_claiming(20_000, 20_000), ImageConfig(), "too_large"),
    ("over-max-pixels", png_claiming(7_000, 7_000), ImageConfig(), "too_large"),
    ("over-max-bytes", encode(noise(64, 64), "PNG"), ImageConfig(max_bytes=1000), "too_large"),
    ("one-pixel", encode(Image.new("RGB", (1, 1)), "PNG"), ImageConfig(), "too_small"),
    ("thin-strip", encode(Image.new("RGB", (500, 20)), "PNG"), ImageConfig(), "too_small"),
]


@pytest.mark.parametrize("name, data, config, kind", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_each_bad_file_raises_one_specific_error(name, data, config, kind):
    source = f"s3://museum/in/{name}.bin"
    with pytest.raises(PaintingImageError) as err:
        decode_painting(data, source, config)
    assert err.value.kind == kind, str(err.value)
    assert err.value.source == source and str(err.value).startswith(source + ": ")
    assert isinstance(err.value, ValueError)


def test_messages_say_what_the_file_is():
    with pytest.raises(PaintingImageError, match="HTML page"):
        decode_painting(ERROR_CASES[1][1], "a.jpg")
    with pytest.raises(PaintingImageError, match="SVG"):
        decode_painting(ERROR_CASES[2][1], "a.jpg")


def test_bomb_header_is_refused_quickly_without_allocating_pixels():
    assert ImageConfig().max_pixels < 20_000 * 20_000
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    tracemalloc.start()
    start = time.perf_counter()
    for size in [(20_000, 20_000), (7_000, 7_000)]:  # above Pillow's own limit, and only above ours
        with pytest.raises(PaintingImageError) as err:
            decode_painting(png_claiming(*size), "bomb.png")
        assert err.value.kind == "too_large" and "bomb.png" in str(err.value)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 1.0 and peak < 20 * 2**20, (elapsed, peak)  # 7000x7000 RGB alone would be 147 MB
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before, "Pillow globals changed"


def test_error_survives_pickling_for_the_run_report():
    err = PaintingImageError("truncated", "s3://b/k.jpg", "cut off")
    back = pickle.loads(pickle.dumps(err))
    assert (back.kind, back.source, str(back)) == ("truncated", "s3://b/k.jpg", "s3://b/k.jpg: cut off")
    with pytest.raises(ValueError, match="unknown PaintingImageError kind"):
        PaintingImageError("broken", "x", "y")
    assert set(ERROR_KINDS) >= {c[3] for c in ERROR_CASES} | {"bad_crop", "not_found"}


@pytest.mark.parametrize("kwargs, field", [
    ({"background": (255, 255)}, "background"), ({"background": (0, 0, 256)}, "background"),
    ({"max_pixels": 0}, "max_pixels"), ({"min_side": 0}, "min_side"), ({"pad_mode": "wrap"}, "pad_mode"),
    ({"formats": ("PNG", "HEIC9")}, "formats"), ({"formats": ()}, "formats"),
])
def test_config_is_validated(kwargs, field):
    with pytest.raises(ValueError, match=f"ImageConfig.{field}"):
        ImageConfig(**kwargs)


# ----------------------------------------------------------------------------------------------- load_painting

def test_load_painting_from_local_path_and_fsspec_uri(tmp_path):
    import fsspec

    data = encode(Image.new("RGB", (120, 80), (255, 0, 0)), "PNG")
    (tmp_path / "p.png").write_bytes(data)
    with fsspec.open("memory://museum/p.png", "wb") as f:
        f.write(data)
    for uri in [str(tmp_path / "p.png"), "memory://museum/p.png"]:
        out = load_painting(uri, 48)
        assert out.shape == (1, 3, 48, 48) and out.dtype == torch.float32
        assert out.min() >= -1 and out.max() <= 1
        assert torch.equal(out[0, :, 24, 24], torch.tensor([1.0, -1.0, -1.0]))  # red at the centre
        assert torch.equal(out[0, :, 0, 0], torch.tensor([1.0, 1.0, 1.0]))  # white top padding


def test_load_painting_maps_io_failures(tmp_path):
    missing = str(tmp_path / "nope.jpg")
    with pytest.raises(PaintingImageError) as err:
        load_painting(missing, 64)
    assert err.value.kind == "not_found" and missing in str(err.value)
    with pytest.raises(PaintingImageError) as err:
        load_painting(str(tmp_path), 64)  # a directory
    assert err.value.kind == "unreadable" and str(tmp_path) in str(err.value)


def test_load_painting_passes_the_uri_into_decode_and_crop_errors(tmp_path):
    path = tmp_path / "small.png"
    path.write_bytes(encode(Image.new("RGB", (64, 64)), "PNG"))
    with pytest.raises(PaintingImageError) as err:
        load_painting(str(path), 64, crop=(40, 40, 40, 40))
    assert err.value.kind == "bad_crop" and str(path) in str(err.value)
    path.write_bytes(b"")
    with pytest.raises(PaintingImageError) as err:
        load_painting(str(path), 64)
    assert err.value.kind == "empty" and str(path) in str(err.value)


# ------------------------------------------------------------------------------------------- tensors -> images

def test_to_pil_round_trips_with_prepare():
    levels = torch.randint(0, 256, (1, 3, 40, 40), generator=torch.Generator().manual_seed(0)).float()
    tensor = levels / 127.5 - 1.0
    image = to_pil(tensor)
    assert image.mode == "RGB" and image.size == (40, 40)
    assert torch.equal(prepare_painting(image, 40), tensor)
    assert torch.equal(prepare_painting(to_pil(tensor[0]), 40), tensor)
    assert torch.equal(prepare_painting(Image.open(io.BytesIO(to_png_bytes(tensor))).convert("RGB"), 40), tensor)


def test_to_pil_clamps_and_rounds():
    t = torch.tensor([-3.0, 2.0, 0.0, 1 / 127.5 * 0.4 - 1.0]).view(1, 1, 4).expand(3, 1, 4)
    assert [p[0] for p in to_pil(t).getdata()] == [0, 255, 128, 0]  # 127.5 rounds to even, 0.4 rounds down


@pytest.mark.parametrize("bad, error", [
    (torch.zeros(4, 8, 8), ValueError), (torch.zeros(2, 3, 8, 8), ValueError), (torch.zeros(8, 8), ValueError),
    (torch.full((3, 8, 8), float("nan")), ValueError), (np.zeros((3, 8, 8)), TypeError),
])
def test_to_pil_rejects_bad_input(bad, error):
    with pytest.raises(error):
        to_pil(bad)


# ---- bounded decoding (catalog masters) and aligned crops

def _jpeg(w: int, h: int) -> bytes:
    import io as _io
    buf = _io.BytesIO()
    grad = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None].repeat(h, 0).repeat(3, 2)
    Image.fromarray(grad).save(buf, "JPEG", quality=70)
    return buf.getvalue()


def test_decode_bounded_reduces_a_master_and_reports_its_full_size():
    from artmator.model.images import decode_bounded

    image, full = decode_bounded(_jpeg(6000, 4000), "master.jpg", max_side=1024)
    assert full == (6000, 4000)
    assert max(image.size) <= 1024 and image.size[0] / image.size[1] == pytest.approx(1.5, rel=0.01)


def test_decode_bounded_applies_the_pixel_limit_to_what_is_decoded():
    from artmator.model.images import ImageConfig, PaintingImageError, decode_bounded, decode_painting

    data, config = _jpeg(4000, 3000), ImageConfig(max_pixels=6_000_000)
    with pytest.raises(PaintingImageError) as info:
        decode_painting(data, "big.jpg", config)
    assert info.value.kind == "too_large"
    image, full = decode_bounded(data, "big.jpg", config, max_side=1000)   # drafted at 1/4: 1000x750
    assert full == (4000, 3000) and max(image.size) <= 1000


def test_prepare_with_an_alignment_warps_the_rotated_square_upright():
    from artmator.model.faces.align import FaceAlignment, warp_aligned
    from artmator.model.images import prepare_painting

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    al = FaceAlignment(cx=210.0, cy=140.0, size=180.0, angle_deg=12.0)
    out = prepare_painting(img, 64, alignment=al)
    expected = np.asarray(warp_aligned(img, al, 64)).astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="not both"):
        prepare_painting(img, 64, crop=(0, 0, 100, 100), alignment=al)


def test_a_backbone_framing_widens_the_face_square_to_where_the_backbone_renders_faces():
    """A backbone that renders a face's training crop at 0.5 of its frame gets the painting's face there, with
    the painting around it: the face square (alignment, or crop box, or whole image) is widened, not shrunk."""
    from artmator.model.faces.align import FaceAlignment, FaceFraming, warp_aligned

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    framing = FaceFraming(scale=0.5, cx=0.5, cy=0.45)
    al = FaceAlignment(cx=210.0, cy=140.0, size=100.0, angle_deg=-8.0)
    out = prepare_painting(img, 64, alignment=al, framing=framing)
    expected = np.asarray(warp_aligned(img, framing.window_for(al), 64, fill=border_colour(img)))
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy(), expected.astype(np.float32) / 127.5 - 1.0, atol=1e-6)
    # Beyond the painting the window shows its border colour, never a mirrored copy of the face.
    plain = Image.new("RGB", (100, 100), (200, 40, 10))
    plain.paste((0, 0, 255), (40, 40, 60, 60))
    wide = prepare_painting(plain, 64, framing=FaceFraming(scale=0.5))
    corner = ((wide[0, :, :10, :10] + 1) * 127.5).round()
    assert torch.all(corner == torch.tensor([200.0, 40.0, 10.0]).view(3, 1, 1))
    # A crop box is the face square around its centre: the box (x 150..250, y 90..190) lands mid-frame at half size.
    boxed = prepare_painting(img, 64, crop=(150, 90, 100, 100), framing=FaceFraming(scale=0.5))
    np.testing.assert_allclose(boxed, prepare_painting(img, 64, alignment=FaceAlignment(200.0, 140.0, 200.0)),
                               atol=1e-6)     # (this window lies inside the painting: no fill)
    # The identity framing (official GRAM-cropped weights) leaves every path exactly as it was.
    np.testing.assert_array_equal(prepare_painting(img, 64, crop=(150, 90, 100, 100), framing=FaceFraming()),
                                  prepare_painting(img, 64, crop=(150, 90, 100, 100)))
