"""Encoders: decode what they wrote back with PyAV / Pillow and check counts, sizes, codecs and budgets."""
from __future__ import annotations

import io

import av
import pytest
from PIL import Image

from artmator.pipeline.gallery import encode_mp4, encode_webm, encode_webp, frame_sprite, ping_pong
from artmator.pipeline.gallery.video import encode_sprite, sprite_grid

from .conftest import draw_frames

@pytest.fixture(scope="module")
def turntable() -> list[Image.Image]:
    return draw_frames(36, 256, hue=60)


def decode(data: bytes) -> tuple[str, list[av.VideoFrame]]:
    with av.open(io.BytesIO(data)) as container:
        codec = container.streams.video[0].codec_context.name
        return codec, list(container.decode(video=0))


@pytest.mark.timeout(120)
def test_ping_pong_order():
    assert ping_pong([0, 1, 2, 3]) == [0, 1, 2, 3, 2, 1]
    assert ping_pong([0, 1]) == [0, 1]


@pytest.mark.timeout(120)
def test_webm_is_vp9_ping_pong_under_budget(turntable):
    data = encode_webm(turntable, 12.0)
    assert len(data) <= 1_000_000
    codec, frames = decode(data)
    assert codec == "vp9"
    assert len(frames) == 70 and (frames[0].width, frames[0].height) == (256, 256)
    # Ping-pong: the second half mirrors the first (frame 35 is the turning point).
    first, mirrored = frames[1].to_ndarray(format="rgb24"), frames[69].to_ndarray(format="rgb24")
    other = frames[18].to_ndarray(format="rgb24")
    assert abs(first.astype(int) - mirrored.astype(int)).mean() < abs(first.astype(int) - other.astype(int)).mean()


@pytest.mark.timeout(120)
def test_mp4_is_h264_yuv420p_with_even_size(turntable):
    data = encode_mp4(turntable, 12.0)
    codec, frames = decode(data)
    assert codec == "h264" and frames[0].format.name == "yuv420p"
    assert len(frames) == 70
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: playable while downloading
    odd = [f.crop((0, 0, 101, 77)) for f in turntable[:5]]
    codec, frames = decode(encode_mp4(odd, 10.0))
    assert (frames[0].width, frames[0].height) == (102, 78) and len(frames) == 8


@pytest.mark.timeout(120)
def test_webp_is_animated_and_loops(turntable):
    data = encode_webp(turntable, 12.0)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "WEBP" and image.is_animated and image.n_frames == 70
        assert image.info.get("loop") == 0 and image.size == (256, 256)


@pytest.mark.timeout(120)
def test_sprite_grid_places_frames_row_major(turntable):
    assert sprite_grid(36) == (6, 6) and sprite_grid(24) == (5, 5) and sprite_grid(1) == (1, 1)
    sheet = frame_sprite(turntable)
    assert sheet.size == (6 * 256, 6 * 256)
    assert sheet.crop((256 * 3, 256 * 2, 256 * 4, 256 * 3)).tobytes() == turntable[15].convert("RGB").tobytes()
    with Image.open(io.BytesIO(encode_sprite(turntable))) as webp:
        assert webp.size == sheet.size


@pytest.mark.timeout(120)
def test_rejects_bad_input(turntable):
    with pytest.raises(ValueError):
        encode_webm([], 12.0)
    with pytest.raises(ValueError):
        encode_mp4(turntable[:3], 0)
    with pytest.raises(ValueError):
        encode_webp([turntable[0], turntable[1].resize((100, 100))], 12.0)


@pytest.mark.timeout(120)
def test_transparent_frames_are_flattened():
    frames = [Image.new("RGBA", (64, 64), (255, 0, 0, 0)) for _ in range(4)]
    _, decoded = decode(encode_webm(frames, 8.0))
    pixel = decoded[0].to_ndarray(format="rgb24")[32, 32]
    assert all(channel > 200 for channel in pixel)  # white background, not red or black

