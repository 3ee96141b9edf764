"""The per-painting render step writes the head's mesh.glb beside its renders, or records why it has none."""
from __future__ import annotations

import json

import pygltflib
import pytest
import torch

from artmator.model import load_backbone
from artmator.model.render import RenderConfig
from artmator.pipeline.layout import MESH, is_render
from artmator.pipeline.painting import records_of, render_files, result_document
from artmator.pipeline.provenance import DIGITAL_SOURCE_TYPE

RENDER = RenderConfig(resolution=24, turntable_frames=3, expressions=(), mesh_resolution=32)


@pytest.fixture(scope="module")
def head():
    backbone = load_backbone("tiny", demo_prior=True)
    return backbone, backbone.sample_latent(1, torch.Generator().manual_seed(1))


@pytest.mark.timeout(300)
def test_renders_include_the_mesh_and_its_record(head):
    backbone, latent = head
    files, record = render_files(backbone, latent, 0.0, 0.0, RENDER, {})
    assert is_render(MESH)
    doc = pygltflib.GLTF2.load_from_bytes(files[MESH])
    assert doc.asset.extras["DigitalSourceType"] == DIGITAL_SOURCE_TYPE
    mesh = record["mesh"]
    assert mesh["file"] == MESH and mesh["resolution"] == 32 and mesh["bytes"] == len(files[MESH])
    assert mesh["faces"] == doc.accessors[doc.meshes[0].primitives[0].indices].count // 3
    assert record["face_flags"] == []
    # result.json keeps the record, and a re-render or refresh reads it back as a render record.
    tuned = {"pose": {}, "face_input": {}, "timings": {}, "losses": {}, "delta_bytes": 1, "base_sha256": "x",
             "quality": {"tune_flags": []}}
    result = json.loads(result_document("p", tuned, record, {}, {}))
    assert result["mesh"] == mesh
    assert records_of(result)[1]["mesh"] == mesh


@pytest.mark.timeout(300)
def test_each_expression_still_is_a_morph_target_of_the_mesh(head):
    backbone, latent = head
    codes = {name: backbone.load_expression(name) for name in ("happiness", "neutral")}
    files, record = render_files(backbone, latent, 0.0, 0.0, RENDER, codes)
    doc = pygltflib.GLTF2.load_from_bytes(files[MESH])
    assert doc.meshes[0].extras == {"targetNames": ["happiness", "neutral"]}
    assert len(doc.meshes[0].primitives[0].targets) == 2 and doc.meshes[0].weights == [0.0, 0.0]
    morphs = record["mesh"]["morph_targets"]
    assert list(morphs) == ["happiness", "neutral"]
    # The sampled latent's own expression is neutral: its neutral target moves nothing, the smile does.
    assert morphs["neutral"]["max_shift"] < 1e-5 < 1e-3 < morphs["happiness"]["max_shift"]
    assert "expressions/happiness.png" in " ".join(files)


@pytest.mark.timeout(300)
def test_a_backbone_that_cannot_morph_keeps_its_mesh_and_says_why(head, monkeypatch):
    backbone, latent = head

    def cannot(*args, **kwargs):
        raise NotImplementedError("no morph_points here")

    monkeypatch.setattr(backbone, "morph_points", cannot)
    files, record = render_files(backbone, latent, 0.0, 0.0, RENDER, {"happiness": backbone.load_expression("happiness")})
    assert MESH in files and record["mesh"]["morph_targets"] == {"error": "no morph_points here"}
    assert pygltflib.GLTF2.load_from_bytes(files[MESH]).meshes[0].primitives[0].targets == []


@pytest.mark.timeout(300)
def test_no_mesh_when_off_or_when_the_field_has_no_surface(head):
    backbone, latent = head
    files, record = render_files(backbone, latent, 0.0, 0.0, RenderConfig(**{**RENDER.__dict__, "mesh_resolution": 0}),
                                 {})
    assert MESH not in files and record["mesh"] is None
    empty = load_backbone("tiny", seed=0)
    with torch.no_grad():
        for head_layer in empty.generator.siren.output_sigma:
            head_layer.bias.fill_(-50.0)
    files, record = render_files(empty, empty.sample_latent(1, torch.Generator().manual_seed(0)), 0.0, 0.0, RENDER,
                                 {})
    assert MESH not in files and "turntable/000.png" in " ".join(files)   # the renders are still there
    assert record["mesh"]["kind"] == "no_surface" and record["face_flags"] == ["no_mesh"]


@pytest.mark.timeout(300)
def test_every_render_file_says_it_is_ai_generated(head):
    """PNG renders (reference, frames, stills) and the animated WebP carry XMP with the IPTC source type; the
    mesh carries it in asset.extras. Parsed back as XMP readers find it."""
    from tests.pipeline.xmp_reading import image_xmp, xmp_fields

    backbone, latent = head
    files, _ = render_files(backbone, latent, 0.0, 0.0, RENDER, {"neutral": backbone.load_expression("neutral")},
                            painting_id="mona.lisa")
    images = [rel for rel in files if rel.endswith((".png", ".webp"))]
    assert "reference.png" in images and "renders/turntable.webp" in images and "renders/expressions/neutral.png" \
        in images and len(images) == 3 + 3
    for rel in images:
        fields = xmp_fields(image_xmp(files[rel]))
        assert fields["DigitalSourceType"] == DIGITAL_SOURCE_TYPE and fields["identifier"] == "mona.lisa", rel
    assert pygltflib.GLTF2.load_from_bytes(files[MESH]).asset.extras["DigitalSourceType"] == DIGITAL_SOURCE_TYPE


@pytest.mark.parametrize("stage1, stage2, flags", [
    (0.100, 0.104, ["random_weights"]),                     # within the margin: stage 2's trade of fit for style
    (0.100, 0.106, ["random_weights", "stage2_drifted"]),   # moved away from the painting
    (0.300, 0.360, ["random_weights", "weak_fit", "stage2_drifted"]),
])
def test_quality_flags_of_the_reference_fit(stage1, stage2, flags):
    from artmator.pipeline.painting import quality_flags
    from artmator.model.tune import TunedPainting

    tuned = TunedPainting("p", None, 0.0, 0.0, False, {}, {}, {"lpips_stage1": stage1, "lpips_ref": stage2})
    assert quality_flags(tuned, random_models=True) == flags
