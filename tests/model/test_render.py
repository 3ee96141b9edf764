from __future__ import annotations

import torch

from artmator.model.render import RenderConfig, render_expressions, render_turntable, render_views, turntable_angles


def test_turntable_frames_batched_equal_single(tiny_backbone):
    latent = tiny_backbone.sample_latent(1, torch.Generator().manual_seed(0))
    cfg = RenderConfig(resolution=16, turntable_frames=5, frame_batch=2)
    frames = render_turntable(tiny_backbone, latent, cfg)
    assert frames.shape == (5, 3, 16, 16)
    single = render_views(tiny_backbone, latent, torch.tensor([turntable_angles(cfg, 0, 0)[0][3].item()]),
                          torch.tensor([0.0]), RenderConfig(resolution=16, frame_batch=1))
    assert torch.allclose(frames[3], single[0], atol=1e-6)


def test_turntable_around_pose_and_pitch(tiny_backbone):
    cfg = RenderConfig(resolution=8, turntable_frames=3, turntable_half_range_deg=10, turntable_around_pose=True)
    yaws, pitches = turntable_angles(cfg, 5.0, -4.0)
    assert torch.allclose(yaws, torch.tensor([-5.0, 5.0, 15.0])) and torch.all(pitches == -4.0)


def test_expression_stills(tiny_backbone):
    latent = tiny_backbone.sample_latent(1, torch.Generator().manual_seed(0))
    stills = render_expressions(tiny_backbone, latent, {"neutral": torch.zeros(64), "x": torch.ones(64)},
                                RenderConfig(resolution=8))
    assert set(stills) == {"neutral", "x"} and stills["x"].shape == (3, 8, 8)
