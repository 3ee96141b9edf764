"""A tuned head as a coloured triangle mesh: marching cubes on the backbone's 3-D field, written as glTF 2.0.

Any backbone that exposes its field (`Backbone.field_box`, `Backbone.sample_field`) gets a mesh: occupancy is
sampled on a regular grid over the field box, its 0.5 iso-surface is extracted (scikit-image's marching cubes),
floaters are dropped, and each vertex takes the field's colour at that point. A backbone that says how its field
moves between expressions (`Backbone.morph_points`) also gets one glTF morph target per expression: the same
vertices, faces and colours, moved to where the expression puts them, so a viewer blends expressions in real
time from one vertex set (`expression_morphs`); only vertices that move are stored (sparse accessors). The
colours carry the radiance field's baked shading, so the GLB declares an unlit material (KHR_materials_unlit):
viewers show the colours as the renders do instead of shading them a second time. Coordinates are the renderer's
world frame (y up, the frontal camera on +z), which is glTF's convention, so viewers open on the painting's frontal
view.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from artmator.model.backbone import Backbone, Latent
from artmator.model.fields import setting

SURFACE_LEVEL = 0.5
"""Occupancy of the visible surface (`FieldSample.occupancy`)."""


class MeshError(ValueError):
    """The field holds no surface to extract (an empty or entirely solid grid)."""


@dataclass(frozen=True)
class MeshConfig:
    """How finely the field is sampled and what survives of the extracted surface."""

    resolution: int = setting(128, "Grid points per side of the field box (cost grows with its cube).")
    chunk_points: int = setting(65536, "Field queries per forward pass (bounds memory; same mesh).", result=False)
    min_component_share: float = setting(
        0.05, "Connected parts with fewer faces than this share of the largest are dropped (floaters inside or "
              "around the head).")

    def __post_init__(self):
        if not 8 <= self.resolution <= 512:
            raise ValueError(f"mesh resolution must be in [8, 512], got {self.resolution}")
        if self.chunk_points < 1 or not 0 <= self.min_component_share <= 1:
            raise ValueError("chunk_points must be >= 1 and min_component_share in [0, 1]")


@dataclass(frozen=True)
class HeadMesh:
    """A coloured triangle mesh in the backbone's world frame."""

    vertices: np.ndarray   # (V, 3) float32
    faces: np.ndarray      # (F, 3) int64, counter-clockwise seen from outside
    colors: np.ndarray     # (V, 3) uint8 sRGB
    morphs: Mapping[str, np.ndarray] = field(default_factory=dict)   # name -> (V, 3) float32 moved vertices


def grid_points(backbone: Backbone, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """The sampling grid over the field box: points (R³, 3) in x-major order and the spacing (3,)."""
    box = backbone.field_box
    low, high = np.asarray(box.low, dtype=np.float64), np.asarray(box.high, dtype=np.float64)
    axes = [np.linspace(low[i], high[i], resolution) for i in range(3)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return points.astype(np.float32), (high - low) / (resolution - 1)


@torch.no_grad()
def sample_field(backbone: Backbone, latent: Latent, points: np.ndarray, chunk: int, psi: float = 1.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy (N,) and colour (N, 3) of one latent (batch 1) at world points (N, 3), in chunks."""
    device = next(iter(latent.values())).device
    occupancy, colour = [], []
    for start in range(0, len(points), chunk):
        p = torch.from_numpy(points[start:start + chunk]).to(device)[None]           # (1, n, 3)
        sample = backbone.sample_field(latent, p, psi=psi)
        occupancy.append(sample.occupancy[0].float().cpu())
        colour.append(sample.color[0].float().cpu())
    return torch.cat(occupancy).numpy(), torch.cat(colour).numpy()


def extract_mesh(backbone: Backbone, latent: Latent, config: MeshConfig = MeshConfig(), psi: float = 1.0
                 ) -> HeadMesh:
    """The 0.5 iso-surface of one latent's occupancy (batch 1), coloured by the field.

    Raises NotImplementedError for a backbone without a field, MeshError when there is no surface."""
    from skimage.measure import marching_cubes

    _ = backbone.field_box  # a backbone without a field says so before any work
    latent = {k: v[:1] for k, v in latent.items()}
    points, spacing = grid_points(backbone, config.resolution)
    occupancy, _ = sample_field(backbone, latent, points, config.chunk_points, psi)
    grid = occupancy.reshape((config.resolution,) * 3)
    if not np.isfinite(grid).all():
        raise MeshError("the field's occupancy is not finite (NaN or inf)")
    if grid.max() <= SURFACE_LEVEL or grid.min() >= SURFACE_LEVEL:
        raise MeshError(f"the field has no surface: occupancy spans [{grid.min():.3f}, {grid.max():.3f}], "
                        f"never crossing {SURFACE_LEVEL}")
    vertices, faces, _, _ = marching_cubes(grid, SURFACE_LEVEL, spacing=tuple(spacing))
    vertices = (vertices + np.asarray(backbone.field_box.low)).astype(np.float32)
    faces = keep_large_parts(faces[:, ::-1].astype(np.int64), config.min_component_share)  # occupancy rises
    vertices, faces = compact(vertices, faces)                                        # inwards: flip to CCW
    _, colour = sample_field(backbone, latent, vertices, config.chunk_points, psi)
    return HeadMesh(vertices, faces, np.round(colour * 255).clip(0, 255).astype(np.uint8))


MORPH_STILL = 1e-3
"""Vertices that an expression moves by less than this share of the mesh's extent are stored as unmoved."""


def expression_morphs(backbone: Backbone, latent: Latent, mesh: HeadMesh, expressions: Mapping[str, torch.Tensor],
                      chunk: int = 65536) -> HeadMesh:
    """`mesh` (of `latent`, batch 1) with one morph target per expression code (D,): its vertices where
    `backbone.morph_points` moves them under that expression. Raises NotImplementedError for a backbone that
    cannot say."""
    latent = {k: v[:1] for k, v in latent.items()}
    device = next(iter(latent.values())).device
    morphs = {}
    for name, code in expressions.items():
        target = backbone.with_expression(latent, code)
        moved = []
        with torch.no_grad():
            for start in range(0, len(mesh.vertices), chunk):
                p = torch.from_numpy(mesh.vertices[start:start + chunk]).to(device)[None]      # (1, n, 3)
                moved.append(backbone.morph_points(latent, target, p)[0].float().cpu())
        morphs[name] = torch.cat(moved).numpy()                                                # (V, 3) float32
    return replace(mesh, morphs={**mesh.morphs, **morphs})


def morph_shift(mesh: HeadMesh, name: str) -> np.ndarray:
    """How far each vertex moves under morph `name`, (V,) world units."""
    return np.linalg.norm(mesh.morphs[name] - mesh.vertices, axis=-1)


def keep_large_parts(faces: np.ndarray, min_share: float) -> np.ndarray:
    """Faces of the connected parts with at least `min_share` of the largest part's faces."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(faces) == 0 or min_share <= 0:
        return faces
    n = int(faces.max()) + 1
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    part = label[faces[:, 0]]
    sizes = np.bincount(part)
    return faces[sizes[part] >= min_share * sizes.max()]


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses and renumber the faces."""
    used, inverse = np.unique(faces, return_inverse=True)
    return vertices[used], inverse.reshape(faces.shape)


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] to linear light (IEC 61966-2-1): glTF vertex colours are linear."""
    srgb = np.asarray(srgb, dtype=np.float64)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def encode_glb(mesh: HeadMesh, extras: Mapping[str, object] | None = None, name: str = "head") -> bytes:
    """The mesh as a binary glTF 2.0 file (pygltflib): float positions, vertex colours in linear light as
    normalised 16-bit RGBA (8-bit linear colours band in dark hair), 16-bit indices where they fit, an unlit
    material, and one morph target per `mesh.morphs` entry (position deltas of the vertices that move, as sparse
    accessors of normalised int16 (KHR_mesh_quantization); names in `mesh.extras.targetNames`, weights 0: the
    file opens on the painting's own expression).
    `extras` (plain JSON data, e.g. provenance) go into `asset.extras`."""
    import pygltflib as g

    if len(mesh.faces) == 0:
        raise MeshError("the mesh has no faces")
    extras = json.loads(json.dumps(dict(extras or {}), allow_nan=False))   # plain data only; fails early
    names = [str(n) for n in mesh.morphs]
    index_type = np.uint16 if len(mesh.vertices) < 65535 else np.uint32
    index_component = g.UNSIGNED_SHORT if index_type == np.uint16 else g.UNSIGNED_INT
    indices = mesh.faces.astype(index_type).reshape(-1)
    positions = np.ascontiguousarray(mesh.vertices, dtype=np.float32)
    linear = srgb_to_linear(mesh.colors / 255.0)
    colours = np.concatenate([linear, np.ones((len(linear), 1))], axis=1)
    colours = np.round(colours * 65535).astype(np.uint16)                     # (V, 4)
    blobs, views, offset = [], [], 0

    def add_view(array: np.ndarray, target: int | None) -> int:
        nonlocal offset
        data = array.tobytes()
        views.append(g.BufferView(buffer=0, byteOffset=offset, byteLength=len(data), target=target))
        data += b"\0" * (-len(data) % 4)                                     # keep every view 4-byte aligned
        blobs.append(data)
        offset += len(data)
        return len(views) - 1

    accessors = [
        g.Accessor(bufferView=add_view(indices, g.ELEMENT_ARRAY_BUFFER), componentType=index_component,
                   count=len(indices), type=g.SCALAR, min=[int(indices.min())], max=[int(indices.max())]),
        g.Accessor(bufferView=add_view(positions, g.ARRAY_BUFFER), componentType=g.FLOAT, count=len(positions),
                   type=g.VEC3, min=positions.min(0).tolist(), max=positions.max(0).tolist()),
        g.Accessor(bufferView=add_view(colours, g.ARRAY_BUFFER), componentType=g.UNSIGNED_SHORT, normalized=True,
                   count=len(colours), type=g.VEC4),
    ]
    targets, quantized = [], False
    still = MORPH_STILL * _box_side(positions)
    for morph_name in mesh.morphs:
        moved_to = np.asarray(mesh.morphs[morph_name], dtype=np.float32)                              # (V, 3)
        if moved_to.shape != positions.shape or not np.isfinite(moved_to).all():
            raise MeshError(f"morph target {morph_name!r} must give every vertex a finite position")
        delta = moved_to - positions
        keep = np.linalg.norm(delta, axis=-1) >= still
        moved = np.flatnonzero(keep) if keep.any() else np.zeros(1, np.int64)   # glTF stores >= 1 value
        values = np.where(keep[moved, None], delta[moved], 0.0)
        if np.abs(values).max() < 1.0:
            # KHR_mesh_quantization: deltas as normalised int16, q / 32767 world units (a step of 3e-5, far below
            # a voxel): half the bytes of float32.
            values = np.round(values * 32767).astype(np.int16)
            component, normalized = g.SHORT, True
        else:
            values, component, normalized = values.astype(np.float32), g.FLOAT, False
        sparse = g.Sparse(count=len(moved),
                          indices=g.AccessorSparseIndices(bufferView=add_view(moved.astype(index_type), None),
                                                          componentType=index_component),
                          values=g.AccessorSparseValues(bufferView=add_view(np.ascontiguousarray(values), None)))
        # min/max of what a reader decodes (zeros included), in the component type (glTF: not normalised).
        bounds = np.concatenate([values, np.zeros((1, 3), values.dtype)]) if len(moved) < len(positions) else values
        cast = int if normalized else float
        accessors.append(g.Accessor(componentType=component, normalized=normalized, count=len(positions),
                                    type=g.VEC3, sparse=sparse, byteOffset=None,  # no buffer view: no offset
                                    min=[cast(v) for v in bounds.min(0)], max=[cast(v) for v in bounds.max(0)]))
        targets.append(g.Attributes(POSITION=len(accessors) - 1))
        quantized = quantized or normalized
    material = g.Material(name="radiance", doubleSided=True, extensions={"KHR_materials_unlit": {}},
                          pbrMetallicRoughness=g.PbrMetallicRoughness(baseColorFactor=[1, 1, 1, 1],
                                                                      metallicFactor=0, roughnessFactor=1))
    primitive = g.Primitive(attributes=g.Attributes(POSITION=1, COLOR_0=2), indices=0, material=0, mode=g.TRIANGLES,
                            targets=targets)
    gltf_mesh = g.Mesh(name=name, primitives=[primitive], weights=[0.0] * len(names),
                       extras={"targetNames": names} if names else {})
    gltf = g.GLTF2(asset=g.Asset(version="2.0", generator="artmator (model.mesh)", extras=extras or {}),
                   scene=0, scenes=[g.Scene(nodes=[0])], nodes=[g.Node(mesh=0, name=name)],
                   meshes=[gltf_mesh], materials=[material],
                   extensionsUsed=["KHR_materials_unlit", *(["KHR_mesh_quantization"] if quantized else [])],
                   extensionsRequired=["KHR_mesh_quantization"] if quantized else [],
                   accessors=accessors, bufferViews=views,
                   buffers=[g.Buffer(byteLength=offset)])
    gltf.set_binary_blob(b"".join(blobs))
    return b"".join(gltf.save_to_bytes())


def _box_side(positions: np.ndarray) -> float:
    return float((positions.max(0) - positions.min(0)).max()) if len(positions) else 0.0


__all__ = ["HeadMesh", "MORPH_STILL", "MeshConfig", "MeshError", "SURFACE_LEVEL", "encode_glb", "expression_morphs",
           "extract_mesh", "morph_shift", "srgb_to_linear"]
