"""IIIF Presentation 3 output: re-parsed by iiif-prezi3's models, plus structural checks prezi3 does not make."""
from __future__ import annotations

import json
import re
import urllib.parse

import pytest
from iiif_prezi3 import Collection, Manifest

from artmator.pipeline.gallery import build_gallery
from artmator.pipeline.gallery.iiif import PRESENTATION_CONTEXT, iiif_rights, plain_value
from artmator.pipeline.provenance import DIGITAL_SOURCE_TYPE

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


def language_maps(node, path=""):
    """Every language map (label, summary, metadata value...) in a document, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("label", "summary", "value") and isinstance(value, dict):
                yield f"{path}.{key}", value
            else:
                yield from language_maps(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from language_maps(value, f"{path}[{i}]")


def canvas(doc: dict, slug: str) -> dict | None:
    return next((c for c in doc["items"] if c["id"].endswith(f"/canvas/{slug}")), None)


def painting_body(canvas_doc: dict) -> dict:
    page = canvas_doc["items"][0]
    assert page["type"] == "AnnotationPage" and "annotations" not in canvas_doc
    annotation = page["items"][0]
    assert annotation["type"] == "Annotation" and annotation["motivation"] == "painting"
    assert annotation["target"] == canvas_doc["id"]
    return annotation["body"]


def check_manifest(doc: dict, languages=("en", "none")) -> None:
    """The structure a Presentation 3 manifest of a painting must have (prezi3 accepts much that is wrong)."""
    assert doc["@context"] == PRESENTATION_CONTEXT
    assert doc["type"] == "Manifest" and doc["label"]
    assert all(is_absolute(i) for i in walk_ids(doc))
    for where, lang_map in language_maps(doc):
        assert lang_map and set(lang_map) <= set(languages), (where, lang_map)
        assert all(isinstance(v, list) and v and all(isinstance(t, str) for t in v) for v in lang_map.values())
    assert "AI-generated 3D interpretation" in doc["summary"]["en"][0]
    labels = {m["label"]["en"][0]: m["value"] for m in doc["metadata"]}
    assert labels["Digital source type"] == {"none": [DIGITAL_SOURCE_TYPE]}
    assert labels["AI-generated"]["en"][0].startswith("AI-generated 3D interpretation")
    [provider] = doc["provider"]
    assert provider["type"] == "Agent" and provider["label"]["en"] and is_absolute(provider["id"])
    assert doc["partOf"] == [{"id": doc["id"].rsplit("/p/", 1)[0] + "/collection.json", "type": "Collection"}]
    assert doc["homepage"][0]["id"] == doc["id"].replace("manifest.json", "index.html")
    turntable = canvas(doc, "turntable")
    assert turntable["label"] == {"en": ["Turntable (AI-generated)"]}
    assert turntable["width"] > 0 and turntable["height"] > 0 and turntable["duration"] > 0
    body = painting_body(turntable)
    assert body["type"] == "Choice"
    assert [b["format"] for b in body["items"]] == ["video/webm", "video/mp4"]
    for video in body["items"]:
        assert video["type"] == "Video" and video["duration"] == turntable["duration"]
        assert (video["width"], video["height"]) == (turntable["width"], turntable["height"])
    placeholder = turntable["placeholderCanvas"]
    assert placeholder["type"] == "Canvas" and painting_body(placeholder)["format"] == "image/png"
    for still in (c for c in doc["items"] if "/canvas/expression-" in c["id"]):
        image = painting_body(still)
        assert image["type"] == "Image" and image["format"] == "image/png" and "duration" not in still
        assert still["label"]["en"][0].startswith("Expression: ")
    assert doc["thumbnail"][0]["type"] == "Image"


@pytest.mark.timeout(120)
def test_manifests_and_collection_validate(built_site):
    for pid in ("mona.lisa", "xss-1"):
        doc = load(built_site.site / "p" / pid / "manifest.json")
        Manifest(**doc)
        check_manifest(doc)
        assert doc["id"] == (built_site.site / "p" / pid / "manifest.json").resolve().as_uri()
        # The canvas duration is the ping-pong length: 2 * 24 - 2 frames at 12 fps.
        assert canvas(doc, "turntable")["duration"] == pytest.approx(46 / 12, abs=1e-3)
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
def test_painting_canvas_rights_credit_and_source(built_site):
    mona = load(built_site.site / "p" / "mona.lisa" / "manifest.json")
    painting = canvas(mona, "painting")
    assert mona["items"][0] is painting                         # the painting first, then what was made of it
    image = painting_body(painting)
    assert image["format"] == "image/jpeg" and re.search(r"/p/mona\.lisa/m-[0-9a-f]{16}/painting\.jpg$", image["id"])
    assert (image["width"], image["height"]) == (painting["width"], painting["height"]) == (72, 96)
    # The painting's own rights and credit sit on the painting; the renders' rights are not the painting's.
    assert painting["rights"] == "http://creativecommons.org/publicdomain/zero/1.0/"
    assert painting["requiredStatement"]["value"] == {"none": [MONA.metadata["credit_line"]]}
    assert "rights" not in mona                                 # no --render-rights: not stated
    assert mona["requiredStatement"]["value"] == {"none": [MONA.metadata["credit_line"]]}
    assert mona["homepage"][1]["id"] == MONA.metadata["source_url"]
    assert mona["seeAlso"][0]["id"] == MONA.metadata["source_url"]
    labels = {m["label"]["en"][0]: list(m["value"].values())[0][0] for m in mona["metadata"]}
    assert labels["Artist"] == "A. Painter" and labels["Date"] == "c. 1503" and "Rights of the painting" not in labels
    model = [r for r in mona["rendering"] if r["type"] == "Model"]
    media = image["id"].rsplit("/", 1)[0] + "/"                 # one version's media folder holds both
    assert model == [{"id": media + "mesh.glb", "type": "Model",
                      "format": "model/gltf-binary", "label": {"en": ["3D mesh (glTF binary)"]}}]

    xss = load(built_site.site / "p" / "xss-1" / "manifest.json")
    assert canvas(xss, "painting") is None and "rights" not in xss and "seeAlso" not in xss
    assert len(xss["homepage"]) == 1                            # the gallery page only: javascript: is no link
    values = {m["label"]["en"][0]: list(m["value"].values())[0][0] for m in xss["metadata"]}
    assert values["Rights of the painting"] == "javascript:alert(1)"  # kept as text only
    assert values["Title"] == '<span>&lt;/script&gt;&lt;img src=x onerror="window.__pwned=1"&gt;</span>'
    assert xss["requiredStatement"]["value"]["none"][0].startswith("<span>Gift of Zoë &amp; Łukasz")


def test_rights_policy():
    assert iiif_rights("https://www.creativecommons.org/licenses/by/4.0/") == \
        "http://creativecommons.org/licenses/by/4.0/"
    assert iiif_rights("http://rightsstatements.org/vocab/InC/1.0/") == "http://rightsstatements.org/vocab/InC/1.0/"
    # Page URLs, deeds and legal codes map to the canonical vocabulary URIs.
    assert iiif_rights("https://rightsstatements.org/page/InC-EDU/1.0/?language=en") == \
        "http://rightsstatements.org/vocab/InC-EDU/1.0/"
    assert iiif_rights("https://rightsstatements.org/page/noc-us/1.0/") == "http://rightsstatements.org/vocab/NoC-US/1.0/"
    assert iiif_rights("https://rightsstatements.org/vocab/Made-Up/1.0/") is None
    assert iiif_rights("https://creativecommons.org/licenses/by-nc-sa/4.0/deed.fr") == \
        "http://creativecommons.org/licenses/by-nc-sa/4.0/"
    assert iiif_rights("https://creativecommons.org/licenses/by/4.0/legalcode") == \
        "http://creativecommons.org/licenses/by/4.0/"
    assert iiif_rights("https://creativecommons.org/licenses/by/3.0/nl/") == \
        "http://creativecommons.org/licenses/by/3.0/nl/"
    assert iiif_rights("https://creativecommons.org/publicdomain/mark/1.0/") == \
        "http://creativecommons.org/publicdomain/mark/1.0/"
    assert iiif_rights("https://creativecommons.org/about/") is None
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
    summary = build_gallery(str(out), str(tmp_path / "site"), base_url="https://museum.example/gallery",
                            language="fr", provider="Musée d'exemple", provider_url="https://museum.example/",
                            render_rights="https://rightsstatements.org/page/InC/1.0/?language=en")
    doc = load(tmp_path / "site" / "p" / "p1" / "manifest.json")
    Manifest(**doc)
    check_manifest(doc, languages=("en", "none", "fr"))
    assert summary.base_url == "https://museum.example/gallery/"
    assert all(i.startswith(("https://museum.example/gallery/p/p1/", "https://museum.example/gallery/collection",
                             "https://museum.example/")) for i in walk_ids(doc))
    assert doc["label"] == {"fr": ["One"]}                       # the catalogue's language, declared
    assert doc["rights"] == "http://rightsstatements.org/vocab/InC/1.0/"   # the renders' rights, canonical
    assert {"label": {"en": ["Rights of the painting"]}, "value": {"fr": ["https://museum.example/terms"]}} \
        in doc["metadata"]
    assert doc["provider"][0]["id"] == "https://museum.example/"
    assert doc["provider"][0]["label"] == {"en": ["Musée d'exemple"]}
    collection = load(tmp_path / "site" / "collection.json")
    assert collection["id"] == "https://museum.example/gallery/collection.json"
    Collection(**collection)
