"""The tri-plane backbone's own pieces: plane sampling, volume compositing, the camera it renders with."""
from __future__ import annotations

import math

import pytest
import torch

from artmator.model import load_backbone
from artmator.model.camera import degrees_to_official, make_rays
from artmator.model.triplane.config import TriplaneConfig
from artmator.model.triplane.networks import TriplaneGenerator
from artmator.model.triplane.volume import PLANE_AXES, composite, sample_depths, sample_planes


def test_plane_sampling_projects_each_point_onto_the_three_axis_planes():
    P = 64
    ramp = torch.linspace(-1, 1, 2 * P + 1)[1::2]                       # pixel centres, align_corners=False
    horizontal = ramp.view(1, P).expand(P, P)                           # feature = the plane's horizontal coordinate
    vertical = ramp.view(P, 1).expand(P, P)
    planes = torch.stack([torch.stack([horizontal, vertical])] * 3)[None]   # (1, 3, C=2, P, P)
    points = torch.tensor([[[0.1, -0.2, 0.3], [-0.4, 0.25, 0.0]]])      # inside the unit box
    features = sample_planes(planes, points, box_side=1.0)              # (1, 2, 2)
    coords = points[0] * 2.0
    expected_h = torch.stack([coords[:, a] for a, _ in PLANE_AXES]).mean(0)
    expected_v = torch.stack([coords[:, b] for _, b in PLANE_AXES]).mean(0)
    torch.testing.assert_close(features[0, :, 0], expected_h, atol=1e-5, rtol=0)
    torch.testing.assert_close(features[0, :, 1], expected_v, atol=1e-5, rtol=0)
    outside = sample_planes(planes, torch.tensor([[[2.0, 2.0, 2.0]]]), box_side=1.0)
    assert torch.equal(outside, torch.zeros(1, 1, 2)), "outside the box the planes give no feature"


def test_compositing_empty_and_solid_space():
    depths = sample_depths(2.0, 3.0, 8)
    assert torch.allclose(depths, 2.0 + (torch.arange(8) + 0.5) / 8)
    rgb = torch.full((1, 2, 8, 3), 0.75)
    empty = torch.full((1, 2, 8, 1), -60.0)
    image, depth, opacity = composite(empty, rgb, depths, 1 / 8, -1.0, background=-1.0, far=3.0)
    assert opacity.max() < 1e-6 and torch.allclose(image, torch.full_like(image, -1.0), atol=1e-5)
    assert torch.allclose(depth, torch.full_like(depth, 3.0), atol=1e-5)
    solid = torch.full((1, 2, 8, 1), -60.0)
    solid[:, :, 3] = 1e4                                                # an opaque wall at the fourth sample
    image, depth, opacity = composite(solid, rgb, depths, 1 / 8, -1.0, background=-1.0, far=3.0)
    torch.testing.assert_close(opacity, torch.ones_like(opacity))
    torch.testing.assert_close(image, torch.full_like(image, 0.5))      # 0.75 in [0, 1] is 0.5 in [-1, 1]
    torch.testing.assert_close(depth, torch.full_like(depth, float(depths[3])))


def test_the_camera_circles_the_look_at_point():
    cfg = TriplaneConfig().render
    yaw, pitch = degrees_to_official(torch.tensor([0.0, 40.0])), degrees_to_official(torch.tensor([0.0, -15.0]))
    rays = make_rays(yaw, pitch, 9, cfg.fov_deg, cfg.radius, cfg.look_at)
    look_at = torch.tensor(cfg.look_at)
    torch.testing.assert_close((rays.origins - look_at).norm(dim=-1), torch.full((2,), cfg.radius))
    centre = rays.directions[:, 4 * 9 + 4]                              # the middle pixel looks at look_at
    towards = torch.nn.functional.normalize(look_at - rays.origins, dim=-1)
    torch.testing.assert_close(centre, towards, atol=1e-5, rtol=0)
    assert rays.origins[0, 2] > look_at[2] and abs(float(rays.origins[0, 0])) < 1e-5    # frontal: on +z


def test_random_weights_render_a_solid_subject_that_turns():
    b = load_backbone("triplane-tiny", seed=0)
    latent = b.sample_latent(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        front, side = (b.render_latent(latent, y, 0.0, 32) for y in (0.0, 45.0))
    assert 0.1 < float(front.opacity.mean()) < 0.95, "neither empty air nor a wall: a subject before a background"
    assert (front.image - side.image).abs().mean() > 0.05
    assert float(front.depth.min()) > b.config.render.ray_start and float(front.depth.max()) <= b.config.render.ray_end


def test_the_generator_declares_linear_and_conv_adapter_targets_and_the_mapping_stays_fixed():
    b = load_backbone("triplane-tiny", seed=0)
    assert b.adapter_targets == TriplaneGenerator.ADAPTER_TARGETS == (torch.nn.Linear, torch.nn.Conv2d)
    assert b.WEIGHT_PARTS == ("mapping", "generator") and not b.supports_expressions
    assert "w_avg" in b.part("mapping").state_dict(), "the truncation centre travels with the mapping weights"
    assert all(not p.requires_grad for p in b.mapping.parameters())


def test_plane_resolution_must_be_a_power_of_two_times_four():
    assert TriplaneConfig(plane_resolution=64).upsamplings == 4
    with pytest.raises(ValueError, match="4 · 2\\^k"):
        TriplaneConfig(plane_resolution=48)
    assert math.isclose(TriplaneConfig().render.fov_deg, 18.837)


def test_field_is_what_the_renderer_composites():
    """The frontal centre ray's rendered opacity is 1 - prod(1 - occupancy) of `sample_field` at the renderer's
    own sample points, so a mesh of the field is the head the renders show."""
    backbone = load_backbone("triplane-tiny", seed=3)
    rs = backbone.config.render
    latent = backbone.sample_latent(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = backbone.render_latent(latent, 0.0, 0.0, 9)
        rays = make_rays(degrees_to_official(torch.zeros(1)), degrees_to_official(torch.zeros(1)), 9, rs.fov_deg,
                         rs.radius, rs.look_at)
        centre = rays.directions[0, 4 * 9 + 4]
        points = rays.origins[0] + centre[None] * sample_depths(rs.ray_start, rs.ray_end, rs.samples)[:, None]
        field = backbone.sample_field(latent, points[None])
    expected = 1 - math.prod(1 - float(a) for a in field.occupancy[0])
    assert float(out.opacity[0, 0, 4, 4]) == pytest.approx(expected, abs=1e-4)
    assert field.color.shape == (1, rs.samples, 3) and float(field.color.min()) >= 0
    box = backbone.field_box
    assert box.low == (-rs.box_side / 2,) * 3 and box.high == (rs.box_side / 2,) * 3
