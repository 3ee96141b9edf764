"""AniFaceGAN's 3-D field (`sample_field`) agrees with its own renders: the mesh extracted from it lies where the
renderer's depth says the head is, and its colours are the rendered ones."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from artmator.model import load_backbone
from artmator.model.anifacegan import rays as R
from artmator.model.camera import degrees_to_official
from artmator.model.mesh import MeshConfig, expression_morphs, extract_mesh, morph_shift, sample_field

RES = 48


@pytest.fixture(scope="module")
def head():
    from artmator.model.anifacegan.demo_prior import tiny_head_weights

    backbone = load_backbone("tiny", weights=tiny_head_weights())
    latent = backbone.sample_latent(1, torch.Generator().manual_seed(3))
    return backbone, latent


@pytest.fixture(scope="module")
def mesh(head):
    backbone, latent = head
    return extract_mesh(backbone, latent, MeshConfig(resolution=64))


def test_field_box_holds_what_the_renderer_sees(head):
    backbone, _ = head
    box = backbone.field_box
    rs = backbone.config.render
    # The frontal camera sits at z = 1; its rays are sampled over [ray_start, ray_end]: z in [1 - end, 1 - start].
    assert box.low[2] <= 1 - rs.ray_end + 1e-6 and box.high[2] >= 1 - rs.ray_start - 1e-6
    half_view = np.tan(np.radians(rs.fov_deg / 2)) * rs.ray_start
    assert box.high[0] >= half_view and box.high[1] >= half_view


@pytest.mark.timeout(300)
@pytest.mark.parametrize("yaw", [0.0, 25.0])
def test_mesh_lies_on_the_rendered_surface_with_its_colours(head, mesh, yaw):
    backbone, latent = head
    with torch.no_grad():
        out = backbone.render_latent(latent, yaw, 0.0, RES)
    rays = R.make_rays(degrees_to_official(torch.tensor([yaw])), degrees_to_official(torch.tensor([0.0])), RES,
                       backbone.config.render.fov_deg)
    solid = (out.opacity[0, 0] > 0.95).flatten()
    depth = out.depth[0, 0].flatten()[solid]
    surface = (rays.origins[0] + rays.directions[0][solid] * depth[:, None]).numpy()      # (n, 3) rendered points
    assert len(surface) > 0.2 * RES * RES
    distance, nearest = cKDTree(mesh.vertices).query(surface)
    voxel = (backbone.field_box.high[0] - backbone.field_box.low[0]) / 63
    assert np.median(distance) < 1.5 * voxel, np.median(distance)
    assert np.quantile(distance, 0.9) < 4 * voxel
    rendered = ((out.image[0].permute(1, 2, 0).reshape(-1, 3)[solid] + 1) / 2).clamp(0, 1).numpy()
    colour = mesh.colors[nearest] / 255.0
    assert np.abs(colour - rendered).mean() < 0.08


def test_occupancy_is_zero_outside_the_outermost_manifold(head):
    backbone, latent = head
    corners = torch.tensor([[[0.119, 0.119, 0.119], [-0.119, 0.119, 0.119], [0.119, -0.119, 0.119]]])
    with torch.no_grad():
        sample = backbone.sample_field(latent, corners)
    assert sample.occupancy.shape == (1, 3) and sample.color.shape == (1, 3, 3)
    assert float(sample.occupancy.max()) == 0.0
    assert float(sample.color.min()) >= 0.0 and float(sample.color.max()) <= 1.0


# ---- expression morph targets -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smiling(head, mesh):
    backbone, latent = head
    code = backbone.load_expression("happiness")
    return backbone.with_expression(latent, code), expression_morphs(backbone, latent, mesh, {"happiness": code})


def test_morph_points_solve_the_deformation_they_invert(head, mesh, smiling):
    """x + o_smile(x) = p + o_own(p): the radiance reads the same point of its field, so it shows what p showed."""
    backbone, latent = head
    target, morphed = smiling
    points = torch.from_numpy(mesh.vertices)[None]
    moved = torch.from_numpy(morphed.morphs["happiness"])[None]
    with torch.no_grad():
        _, own = backbone.deform.forward_modulated(points, *backbone.deform.modulation(latent["z_id"], latent["z_exp"]))
        _, smile = backbone.deform.forward_modulated(moved, *backbone.deform.modulation(target["z_id"], target["z_exp"]))
    residual = ((points + own) - (moved + smile)).norm(dim=-1)
    assert float(residual.max()) < 1e-5
    shift = morph_shift(morphed, "happiness")
    assert shift.max() > 0.003                          # the smile moves the mouth by a few voxels (0.0038 each)
    # Its own expression moves nothing.
    same = backbone.morph_points(latent, latent, points)
    assert float((same - points).abs().max()) < 1e-6


def test_morphed_vertices_lie_on_the_smiling_surface(head, mesh, smiling):
    backbone, _ = head
    target, morphed = smiling
    moved = morph_shift(morphed, "happiness") > 0.001
    assert moved.sum() > 100
    before, _ = sample_field(backbone, target, mesh.vertices[moved], 65536)
    after, _ = sample_field(backbone, target, morphed.morphs["happiness"][moved], 65536)
    # On the 0.5 iso-surface of the smiling field: much nearer than the unmorphed vertices are (0.20 -> 0.06).
    assert np.abs(after - 0.5).mean() < 0.5 * np.abs(before - 0.5).mean()


@pytest.mark.timeout(300)
def test_the_morphed_mesh_shows_the_rendered_smile(head, mesh, smiling):
    """The happiness render's visible surface and colours are nearer the morphed mesh than the unmorphed one."""
    backbone, _ = head
    target, morphed = smiling
    with torch.no_grad():
        out = backbone.render_latent(target, 0.0, 0.0, RES)
    rays = R.make_rays(degrees_to_official(torch.tensor([0.0])), degrees_to_official(torch.tensor([0.0])), RES,
                       backbone.config.render.fov_deg)
    solid = (out.opacity[0, 0] > 0.95).flatten()
    surface = (rays.origins[0] + rays.directions[0][solid] * out.depth[0, 0].flatten()[solid][:, None]).numpy()
    rendered = ((out.image[0].permute(1, 2, 0).reshape(-1, 3)[solid] + 1) / 2).clamp(0, 1).numpy()
    errors = {}
    for name, vertices in (("unmorphed", mesh.vertices), ("morphed", morphed.morphs["happiness"])):
        _, nearest = cKDTree(vertices).query(surface)
        errors[name] = np.abs(mesh.colors[nearest] / 255.0 - rendered).mean()
    assert errors["morphed"] < errors["unmorphed"], errors
    assert errors["morphed"] < 0.08, errors
