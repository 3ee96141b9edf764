"""model.mesh: marching cubes on a backbone's field, floaters dropped, and the GLB as a glTF reader sees it."""
from __future__ import annotations

import json

import numpy as np
import pygltflib
import pytest
import torch

from artmator.model import load_backbone
from artmator.model.backbone import Backbone
from artmator.model.mesh import (HeadMesh, MeshConfig, MeshError, encode_glb, expression_morphs, extract_mesh,
                                 keep_large_parts, srgb_to_linear)

HOSTILE = {"title": "</script><img src=x onerror=alert(1)>", "nul": "a\x00b", "quote": '"\'\\', "emoji": "Zoë 🎨",
           "nested": {"list": [1, 2.5, None, True]}}


def accessor_array(doc: pygltflib.GLTF2, index: int) -> np.ndarray:
    """An accessor's data from the GLB's binary chunk, as a glTF reader decodes it."""
    accessor = doc.accessors[index]
    view = doc.bufferViews[accessor.bufferView]
    dtype = {pygltflib.UNSIGNED_SHORT: np.uint16, pygltflib.UNSIGNED_INT: np.uint32,
             pygltflib.FLOAT: np.float32}[accessor.componentType]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[accessor.type]
    blob = doc.binary_blob()[view.byteOffset + (accessor.byteOffset or 0):view.byteOffset + view.byteLength]
    return np.frombuffer(blob, dtype=dtype, count=accessor.count * width).reshape(accessor.count, width)


def ball(n: int = 20) -> HeadMesh:
    from skimage.measure import marching_cubes

    axis = np.linspace(-1, 1, n)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    vertices, faces, _, _ = marching_cubes(0.7 - np.sqrt(x * x + y * y + z * z), 0.0, spacing=(axis[1] - axis[0],) * 3)
    colours = np.clip((vertices / 2) * 255, 0, 255).astype(np.uint8)
    return HeadMesh((vertices - 1).astype(np.float32), faces[:, ::-1].astype(np.int64), colours)


def test_glb_is_glTF_2_with_unlit_linear_colours_and_extras():
    mesh = ball()
    data = encode_glb(mesh, HOSTILE, name="head")
    assert data[:4] == b"glTF"
    doc = pygltflib.GLTF2.load_from_bytes(data)
    assert doc.asset.version == "2.0" and doc.asset.extras == HOSTILE       # hostile text stays data
    assert doc.extensionsUsed == ["KHR_materials_unlit"]
    assert doc.materials[0].extensions == {"KHR_materials_unlit": {}}
    primitive = doc.meshes[0].primitives[0]
    assert primitive.mode == pygltflib.TRIANGLES and primitive.material == 0
    positions = accessor_array(doc, primitive.attributes.POSITION)
    np.testing.assert_array_equal(positions, mesh.vertices)
    assert doc.accessors[primitive.attributes.POSITION].min == pytest.approx(mesh.vertices.min(0).tolist())
    assert doc.accessors[primitive.attributes.POSITION].max == pytest.approx(mesh.vertices.max(0).tolist())
    indices = accessor_array(doc, primitive.indices).reshape(-1, 3)
    assert indices.dtype == np.uint16                                       # fewer than 65,535 vertices
    np.testing.assert_array_equal(indices, mesh.faces)
    colour = doc.accessors[primitive.attributes.COLOR_0]
    assert colour.normalized and colour.type == "VEC4"
    linear = accessor_array(doc, primitive.attributes.COLOR_0)[:, :3] / 65535.0
    np.testing.assert_allclose(linear, srgb_to_linear(mesh.colors / 255.0), atol=1 / 65535)
    for view in doc.bufferViews:
        assert view.byteOffset % 4 == 0
    # Outward faces: the ball's volume is positive with the winding written.
    tri = positions[indices]
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    assert volume > 0


def test_glb_refuses_non_json_extras_and_empty_meshes():
    with pytest.raises(ValueError):
        encode_glb(ball(), {"bad": float("nan")})
    with pytest.raises(MeshError):
        encode_glb(HeadMesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), np.zeros((0, 3), np.uint8)))


def test_keep_large_parts_drops_floaters():
    big = ball(20)
    small = ball(5)
    faces = np.concatenate([big.faces, small.faces + len(big.vertices)])
    assert len(small.faces) < 0.05 * len(big.faces)
    kept = keep_large_parts(faces, 0.05)
    np.testing.assert_array_equal(kept, big.faces)
    np.testing.assert_array_equal(keep_large_parts(faces, 0.0), faces)


class FieldlessBackbone(Backbone):
    """A backbone that implements the required contract only (no 3-D field), like a backbone package might."""

    preset = "fieldless"

    def base_hash(self):
        return "0" * 64

    @property
    def default_resolution(self):
        return 32

    def sample_latent(self, batch, generator=None):
        return {"z": torch.zeros(batch, 4)}

    @property
    def inverted_latents(self):
        return ("z",)

    def render_latent(self, latent, yaw_deg, pitch_deg, resolution, *, psi=1.0, chunk_rays=None):
        raise AssertionError("not needed")

    def tunable(self):
        return torch.nn.Linear(1, 1)

    def with_tunable(self, module):
        return self


def test_a_backbone_without_a_field_says_so():
    backbone = FieldlessBackbone()
    with pytest.raises(NotImplementedError, match="fieldless backbone does not expose its 3-D field"):
        extract_mesh(backbone, backbone.sample_latent(1))


def test_a_field_without_a_surface_is_a_mesh_error():
    backbone = load_backbone("tiny", seed=0)
    with torch.no_grad():                     # every density head far negative: nothing is ever opaque
        for head in backbone.generator.siren.output_sigma:
            head.bias.fill_(-50.0)
    latent = backbone.sample_latent(1, torch.Generator().manual_seed(0))
    with pytest.raises(MeshError, match="no surface"):
        extract_mesh(backbone, latent, MeshConfig(resolution=16))


def test_mesh_config_is_validated():
    with pytest.raises(ValueError, match="resolution"):
        MeshConfig(resolution=4)
    with pytest.raises(ValueError):
        MeshConfig(min_component_share=2)


def test_extras_survive_json_round_trip_exactly():
    doc = pygltflib.GLTF2.load_from_bytes(encode_glb(ball(), HOSTILE))
    assert json.dumps(doc.asset.extras, sort_keys=True) == json.dumps(HOSTILE, sort_keys=True)


def sparse_array(doc: pygltflib.GLTF2, index: int) -> np.ndarray:
    """A sparse accessor without a buffer view as a glTF reader decodes it: zeros, then the stored values."""
    accessor = doc.accessors[index]
    assert accessor.bufferView is None and accessor.sparse is not None
    out = np.zeros((accessor.count, 3), np.float32)
    sparse, blob = accessor.sparse, doc.binary_blob()
    iview, vview = doc.bufferViews[sparse.indices.bufferView], doc.bufferViews[sparse.values.bufferView]
    itype = {pygltflib.UNSIGNED_SHORT: np.uint16, pygltflib.UNSIGNED_INT: np.uint32}[sparse.indices.componentType]
    vtype = {pygltflib.SHORT: np.int16, pygltflib.FLOAT: np.float32}[accessor.componentType]
    where = np.frombuffer(blob, itype, count=sparse.count, offset=iview.byteOffset)
    values = np.frombuffer(blob, vtype, count=sparse.count * 3, offset=vview.byteOffset).reshape(-1, 3)
    out[where] = np.maximum(values / 32767.0, -1.0) if accessor.normalized else values     # glTF's decoding
    return out


def test_morph_targets_store_only_the_vertices_that_move():
    mesh = ball()
    smile = mesh.vertices.copy()
    lower = mesh.vertices[:, 1] < -0.3
    smile[lower] += np.array([0.0, 0.05, 0.02], np.float32)
    tiny_noise = mesh.vertices + 1e-7                               # below MORPH_STILL: stored as unmoved
    morphed = HeadMesh(mesh.vertices, mesh.faces, mesh.colors, morphs={"happiness": smile, "still": tiny_noise})
    doc = pygltflib.GLTF2.load_from_bytes(encode_glb(morphed, HOSTILE))
    assert doc.extensionsRequired == ["KHR_mesh_quantization"]          # deltas as normalised int16
    gltf_mesh = doc.meshes[0]
    assert gltf_mesh.extras == {"targetNames": ["happiness", "still"]} and gltf_mesh.weights == [0.0, 0.0]
    happiness, still = (t["POSITION"] for t in gltf_mesh.primitives[0].targets)
    delta = sparse_array(doc, happiness)
    np.testing.assert_allclose(delta, smile - mesh.vertices, atol=0.5 / 32767 + 1e-7)   # one quantisation step
    assert doc.accessors[happiness].sparse.count == lower.sum()
    assert doc.accessors[happiness].normalized and doc.accessors[happiness].componentType == pygltflib.SHORT
    assert np.array(doc.accessors[happiness].min) / 32767 == pytest.approx(delta.min(0), abs=1e-6)
    assert np.array(doc.accessors[happiness].max) / 32767 == pytest.approx(delta.max(0), abs=1e-6)
    assert doc.accessors[still].sparse.count == 1          # glTF needs one stored value: a zero
    assert not sparse_array(doc, still).any()
    for view in doc.bufferViews:
        assert view.byteOffset % 4 == 0
    # Without morphs the file is what it was: no targets, no names, no extension required.
    plain = pygltflib.GLTF2.load_from_bytes(encode_glb(mesh))
    assert plain.meshes[0].primitives[0].targets == [] and not plain.meshes[0].extras
    assert not plain.extensionsRequired and plain.extensionsUsed == ["KHR_materials_unlit"]


def test_a_morph_beyond_the_int16_range_is_stored_as_floats():
    mesh = ball()
    far = mesh.vertices + np.array([1.5, 0.0, 0.0], np.float32)       # 1.5 world units: not a normalised int16
    doc = pygltflib.GLTF2.load_from_bytes(encode_glb(HeadMesh(mesh.vertices, mesh.faces, mesh.colors,
                                                              morphs={"far": far})))
    index = doc.meshes[0].primitives[0].targets[0]["POSITION"]
    assert doc.accessors[index].componentType == pygltflib.FLOAT and not doc.extensionsRequired
    np.testing.assert_allclose(sparse_array(doc, index), far - mesh.vertices, atol=1e-6)


def test_morph_targets_must_move_every_vertex_to_a_finite_place():
    mesh = ball()
    bad = mesh.vertices.copy()
    bad[0] = np.nan
    with pytest.raises(MeshError, match="finite"):
        encode_glb(HeadMesh(mesh.vertices, mesh.faces, mesh.colors, morphs={"happiness": bad}))
    with pytest.raises(MeshError, match="finite"):
        encode_glb(HeadMesh(mesh.vertices, mesh.faces, mesh.colors, morphs={"happiness": bad[:10]}))


class ExpressiveFieldlessBackbone(FieldlessBackbone):
    """Has expression codes but does not say how its field moves with them."""

    @property
    def supports_expressions(self):
        return True

    def with_expression(self, latent, expression):
        return dict(latent)


def test_a_backbone_that_cannot_move_its_field_gets_no_morphs():
    backbone = ExpressiveFieldlessBackbone()
    with pytest.raises(NotImplementedError, match="no expression morph targets"):
        expression_morphs(backbone, backbone.sample_latent(1), ball(), {"happiness": torch.zeros(4)})
