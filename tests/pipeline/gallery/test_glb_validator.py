"""Every mesh.glb the pipeline writes passes the Khronos glTF-Validator (npm `gltf-validator`, vendored for tests
only) in headless Chromium with no error and no warning: plain meshes, meshes with expression morph targets
(sparse accessors), and meshes too big for 16-bit indices."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from artmator.model.mesh import HeadMesh, encode_glb
from artmator.pipeline.layout import MESH
from artmator.pipeline.provenance import glb_extras

from .conftest import sphere_glb

pytestmark = pytest.mark.browser

VALIDATOR = Path(__file__).parent / "vendor" / "gltf-validator" / "gltf_validator.dart.js"


def validate(browser, data: bytes) -> dict:
    """The validator's report on `data`, run in a blank page (the compiled Dart exports into `exports`)."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.evaluate("window.exports = {}; null")
        page.add_script_tag(content=VALIDATOR.read_text())
        # The compiled validator needs options with a `uri` (it names the asset in the report).
        report = json.loads(page.evaluate("""async (b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            try {
                return JSON.stringify(await exports.validateBytes(bytes, {uri: "mesh.glb"}));
            } catch (err) {
                return JSON.stringify({failed: String(err)});
            }
        }""", base64.b64encode(data).decode()))
        assert "failed" not in report, report
        return report
    finally:
        context.close()


def big_ball() -> HeadMesh:
    """A mesh with more than 65,535 vertices (32-bit indices), with a morph target on part of it."""
    from skimage.measure import marching_cubes

    axis = np.linspace(-1, 1, 140)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    vertices, faces, _, _ = marching_cubes(0.9 - np.sqrt(x * x + y * y + z * z), 0.0, spacing=(axis[1] - axis[0],) * 3)
    vertices = (vertices - 1).astype(np.float32)
    moved = vertices + (vertices[:, 1:2] < 0) * np.array([[0.1, 0.0, 0.0]], np.float32)
    colours = np.clip((vertices + 1) / 2 * 255, 0, 255).astype(np.uint8)
    return HeadMesh(vertices, faces[:, ::-1].astype(np.int64), colours, morphs={"wide": moved.astype(np.float32)})


def assert_valid(report: dict) -> None:
    issues = report["issues"]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]


@pytest.mark.timeout(300)
def test_the_pipelines_meshes_pass_the_gltf_validator(browser):
    from artmator.model import load_backbone
    from artmator.model.render import RenderConfig
    from artmator.pipeline.painting import render_files

    backbone = load_backbone("tiny", demo_prior=True)
    latent = backbone.sample_latent(1, torch.Generator().manual_seed(1))
    render = RenderConfig(resolution=24, turntable_frames=2, expressions=(), mesh_resolution=40)
    codes = {name: backbone.load_expression(name) for name in ("happiness", "neutral")}
    with_morphs, _ = render_files(backbone, latent, 0.0, 0.0, render, codes)
    plain, _ = render_files(backbone, latent, 0.0, 0.0, render, {})
    report = validate(browser, with_morphs[MESH])
    assert_valid(report)
    assert report["info"]["hasMorphTargets"] and report["info"]["generator"] == "artmator (model.mesh)"
    assert_valid(validate(browser, plain[MESH]))
    assert not validate(browser, plain[MESH])["info"]["hasMorphTargets"]


@pytest.mark.timeout(300)
def test_large_and_fixture_meshes_pass_the_gltf_validator(browser):
    big = big_ball()
    assert len(big.vertices) > 65535
    report = validate(browser, encode_glb(big, glb_extras()))
    assert_valid(report)
    assert report["info"]["totalVertexCount"] == len(big.vertices)
    assert_valid(validate(browser, sphere_glb()))


@pytest.mark.timeout(120)
def test_the_validator_finds_a_broken_file(browser):
    """The check can fail: an index accessor whose declared maximum is wrong is an error."""
    import pygltflib

    doc = pygltflib.GLTF2.load_from_bytes(sphere_glb())
    doc.accessors[doc.meshes[0].primitives[0].indices].max = [1]
    report = validate(browser, b"".join(doc.save_to_bytes()))
    assert report["issues"]["numErrors"] > 0
    assert "ACCESSOR_MAX_MISMATCH" in {m["code"] for m in report["issues"]["messages"]}
