"""Static gallery + IIIF publication of committed paintings (`artmator gallery OUT --site DEST`).

`video` holds the pure encoders the pipeline also uses when it commits a painting."""
from __future__ import annotations

from .site import GallerySummary, build_gallery
from .video import encode_mp4, encode_webm, encode_webp, frame_sprite, ping_pong

__all__ = ["GallerySummary", "build_gallery", "encode_mp4", "encode_webm", "encode_webp", "frame_sprite",
           "ping_pong"]
