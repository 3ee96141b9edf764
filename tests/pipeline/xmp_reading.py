"""Reading XMP and container tags back out of files, the way XMP readers find them (for the disclosure tests)."""
from __future__ import annotations

import io
import struct
import xml.etree.ElementTree as ET

import av
from PIL import Image

from artmator.pipeline.provenance import MP4_XMP_UUID, XMP_NS

IPTC_SOURCE = f"{{{XMP_NS['Iptc4xmpExt']}}}DigitalSourceType"


def xmp_fields(packet: bytes | str) -> dict[str, str]:
    """{local name: text} of an XMP packet's leaf elements, parsed as XML (the packet wrapper is a PI)."""
    text = packet.decode("utf-8") if isinstance(packet, bytes) else packet
    root = ET.fromstring(text[text.index("<x:xmpmeta"):text.rindex("</x:xmpmeta>") + len("</x:xmpmeta>")])
    return {el.tag.split("}")[1]: el.text for el in root.iter() if el.text is not None and len(el) == 0}


def image_xmp(data: bytes) -> bytes | str | None:
    """The XMP a PNG (iTXt XML:com.adobe.xmp) or WebP (XMP chunk) holds, or None."""
    image = Image.open(io.BytesIO(data))
    return image.info.get("XML:com.adobe.xmp") if image.format == "PNG" else image.info.get("xmp")


def mp4_xmp(data: bytes) -> bytes | None:
    """The payload of the top-level XMP `uuid` box of an MP4, or None."""
    at = 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[at + 8:at + 16])[0], 16
        elif size == 0:
            size = len(data) - at
        if kind == b"uuid" and data[at + header:at + header + 16] == MP4_XMP_UUID:
            return data[at + header + 16:at + size]
        at += size
    return None


def container_tags(data: bytes, suffix: str) -> dict[str, str]:
    """Container-level metadata as FFmpeg reads it (keys lower-cased: Matroska upper-cases its tag names)."""
    with av.open(io.BytesIO(data), format={"mp4": "mp4", "webm": "webm"}[suffix]) as container:
        return {k.lower(): v for k, v in container.metadata.items()}


def frames_decode(data: bytes, suffix: str) -> int:
    with av.open(io.BytesIO(data), format={"mp4": "mp4", "webm": "webm"}[suffix]) as container:
        return sum(1 for _ in container.decode(video=0))
