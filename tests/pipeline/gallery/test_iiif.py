"""IIIF Presentation 3 output: re-parsed by iiif-prezi3's models, plus structural checks prezi3 does not make."""
from __future__ import annotations

import json
import urllib.parse

import pytest
from iiif_prezi3 import Collection, Manifest

from artmator.pipeline.gallery import build_gallery
from artmator.pipeline.gallery.iiif import PRESENTATION_CONTEXT, iiif_rights, plain_value

from .conftest import MONA, PaintingSpec, write_painting


def load(path) -> dict:
    return json.loads(path.read_text())


def is_absolute(uri: str) -> bool:
    parts = urllib.parse.urlsplit(uri)
    return bool(parts.scheme) and (bool(parts.netloc) or parts.scheme == "file")


def walk_ids(node):
    if isinstance(node, dict):
        if "id" in node:
            yield node["id"]
        for value in node.values():
            yield from walk_ids(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk_ids(value)


def check_manifest(doc: dict) -> None:
    """The structure a Presentation 3 video manifest must have (prezi3 accepts much that is wrong)."""
    assert doc["@context"] == PRESENTATION_CONTEXT
    assert doc["type"] == "Manifest" and doc["label"]
    assert all(is_absolute(i) for i in walk_ids(doc))
    canvas = doc["items"][0]
    assert canvas["type"] == "Canvas" and canvas["width"] > 0 and canvas["height"] > 0
    assert canvas["duration"] > 0
    page = canvas["items"][0]
    assert page["type"] == "AnnotationPage" and "annotations" not in canvas
    annotation = page["items"][0]
    assert annotation["type"] == "Annotation" and annotation["motivation"] == "painting"
    assert annotation["target"] == canvas["id"]
    body = annotation["body"]
    assert body["type"] == "Video" and body["format"] == "video/webm" and body["duration"] == canvas["duration"]
    for still in doc["items"][1:]:
        image = still["items"][0]["items"][0]["body"]
        assert image["type"] == "Image" and image["format"] == "image/png" and "duration" not in still
    assert doc["thumbnail"][0]["type"] == "Image"


@pytest.mark.timeout(120)
def test_manifests_and_collection_validate(built_site):
    for pid in ("mona.lisa", "xss-1"):
        doc = load(built_site.site / "p" / pid / "manifest.json")
        Manifest(**doc)
        check_manifest(doc)
        assert doc["id"] == (built_site.site / "p" / pid / "manifest.json").resolve().as_uri()
        # The canvas duration is the ping-pong length: 2 * 24 - 2 frames at 12 fps.
        assert doc["items"][0]["duration"] == pytest.approx(46 / 12, abs=1e-3)
        # Every referenced local file exists.
        for uri in walk_ids(doc):
            if uri.endswith((".webm", ".mp4", ".webp", ".png")):
                assert (built_site.site / uri.removeprefix(built_site.summary.base_url)).is_file(), uri
    collection = load(built_site.site / "collection.json")
    Collection(**collection)
    assert collection["@context"] == PRESENTATION_CONTEXT and collection["type"] == "Collection"
    refs = collection["items"]
    assert [r["type"] for r in refs] == ["Manifest", "Manifest"]
    assert {r["id"] for r in refs} == {load(built_site.site / "p" / p / "manifest.json")["id"]
                                       for p in ("mona.lisa", "xss-1")}
    assert all(is_absolute(i) for i in walk_ids(collection))


@pytest.mark.timeout(120)
def test_rights_credit_and_source(built_site):
    mona = load(built_site.site / "p" / "mona.lisa" / "manifest.json")
    assert mona["rights"] == "http://creativecommons.org/publicdomain/zero/1.0/"
    assert mona["requiredStatement"]["value"] == {"none": [MONA.metadata["credit_line"]]}
    assert mona["homepage"][0]["id"] == MONA.metadata["source_url"]
    assert mona["seeAlso"][0]["id"] == MONA.metadata["source_url"]
    labels = {m["label"]["en"][0]: m["value"]["none"][0] for m in mona["metadata"]}
    assert labels["Artist"] == "A. Painter" and labels["Date"] == "c. 1503" and "Rights" not in labels

    xss = load(built_site.site / "p" / "xss-1" / "manifest.json")
    assert "rights" not in xss and "homepage" not in xss and "seeAlso" not in xss
    values = {m["label"]["en"][0]: m["value"]["none"][0] for m in xss["metadata"]}
    assert values["Rights"] == "javascript:alert(1)"  # kept as text only
    assert values["Title"] == '<span>&lt;/script&gt;&lt;img src=x onerror="window.__pwned=1"&gt;</span>'
    assert xss["requiredStatement"]["value"]["none"][0].startswith("<span>Gift of Zoë &amp; Łukasz")


def test_rights_policy():
    assert iiif_rights("https://www.creativecommons.org/licenses/by/4.0/") == \
        "http://creativecommons.org/licenses/by/4.0/"
    assert iiif_rights("http://rightsstatements.org/vocab/InC/1.0/") == "http://rightsstatements.org/vocab/InC/1.0/"
    assert iiif_rights("https://museum.example/terms") is None
    assert iiif_rights("javascript:alert(1)") is None
    assert iiif_rights("Public domain") is None
    assert plain_value("plain") == "plain"
    assert plain_value("<b>x</b>") == "<span>&lt;b&gt;x&lt;/b&gt;</span>"


@pytest.mark.timeout(120)
def test_base_url_makes_http_ids(tmp_path):
    out = tmp_path / "out"
    write_painting(out, PaintingSpec("p1", {"title": "One", "rights": "https://museum.example/terms"},
                                     frames=6, size=32))
    summary = build_gallery(str(out), str(tmp_path / "site"), base_url="https://museum.example/gallery")
    doc = load(tmp_path / "site" / "p" / "p1" / "manifest.json")
    Manifest(**doc)
    check_manifest(doc)
    assert summary.base_url == "https://museum.example/gallery/"
    assert all(i.startswith("https://museum.example/gallery/p/p1/") for i in walk_ids(doc))
    assert "rights" not in doc
    assert {"label": {"en": ["Rights"]}, "value": {"none": ["https://museum.example/terms"]}} in doc["metadata"]
    collection = load(tmp_path / "site" / "collection.json")
    assert collection["id"] == "https://museum.example/gallery/collection.json"
