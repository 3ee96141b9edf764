"""The backbone reproduces the official AniFaceGAN implementation's own outputs (reference_io.npz) to 1e-4."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from artmator.model import load_backbone

TOL = 1e-4


@pytest.fixture(scope="module")
def ref(anifacegan_fixtures):
    data = np.load(anifacegan_fixtures / "reference_io.npz")
    return {k: torch.from_numpy(data[k]) for k in data.files}


@pytest.fixture(scope="module")
def official(anifacegan_fixtures):
    return load_backbone("anifacegan", weights={
        "generator": str(anifacegan_fixtures / "generator_random_seed0.safetensors"),
        "deform": str(anifacegan_fixtures / "dif.pth"),
    })


def close(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@torch.no_grad()
def test_mapping_network_frequencies_and_phases(official, ref):
    freq, phase = official.modulation(ref["z_id"], ref["noise"])
    assert close(freq, ref["freq"]) <= TOL
    assert close(phase, ref["phase"]) <= TOL


@torch.no_grad()
def test_deformation_network(official, ref):
    new_coords, offsets = official.deform(ref["z_id"], ref["z_exp"], ref["deform_coords"])
    assert close(new_coords, ref["deform_new_coords"]) <= TOL
    assert close(offsets, ref["deform_offsets"]) <= TOL


@torch.no_grad()
def test_radiance_network(official, ref):
    out = official.generator.siren(ref["radiance_points"], ref["freq"], ref["phase"], ref["radiance_dirs"])
    assert close(out, ref["radiance_out"]) <= TOL


@torch.no_grad()
def test_manifold_sampler(official, ref):
    assert close(official.generator.model_sample(ref["radiance_points"]), ref["sampler_out"]) <= TOL


@torch.no_grad()
def test_full_render_image_and_depth(official, ref):
    # The fixture's angles are official radians; the public API takes user degrees (0 = frontal).
    yaw_deg = torch.rad2deg(ref["yaw"][:, 0] - torch.pi / 2)
    pitch_deg = torch.rad2deg(ref["pitch"][:, 0] - torch.pi / 2)
    result = official.render(ref["z_id"], ref["z_exp"], ref["noise"], yaw_deg, pitch_deg, 32, psi=1.0)
    assert close(result.image, ref["img"]) <= TOL
    assert close(result.depth, ref["depth"]) <= TOL
    assert result.opacity.shape == (2, 1, 32, 32)
    assert float(result.opacity.min()) >= 0 and float(result.opacity.max()) <= 1 + 1e-5


@torch.no_grad()
def test_chunked_render_equals_unchunked(official, ref):
    args = (ref["z_id"], ref["z_exp"], ref["noise"], 10.0, -5.0, 16)
    whole = official.render(*args, psi=1.0, chunk_rays=256)
    chunked = official.render(*args, psi=1.0, chunk_rays=37)
    assert close(whole.image, chunked.image) <= 1e-6
    assert close(whole.depth, chunked.depth) <= 1e-6


def test_chunked_render_with_gradients_matches(official, ref):
    z_id = ref["z_id"][:1].clone().requires_grad_()
    grads = []
    for chunk in (None, 50):
        z_id.grad = None
        r = official.render(z_id, ref["z_exp"][:1], ref["noise"][:1], 0.0, 0.0, 12, psi=1.0, chunk_rays=chunk)
        r.image.square().mean().backward()
        grads.append(z_id.grad.clone())
    assert torch.isfinite(grads[0]).all()
    assert close(grads[0], grads[1]) <= 1e-5


@torch.no_grad()
def test_truncation_moves_towards_average(official, ref):
    freq, phase = official.modulation(ref["z_id"], ref["noise"])
    avg_f, _ = official.average_modulation()
    tf, _ = official.truncate(freq, phase, 0.5)
    assert close(tf, avg_f + 0.5 * (freq - avg_f)) <= 1e-6
    assert official.truncate(freq, phase, 1.0)[0] is freq


def test_skipping_empty_slots_changes_no_pixel_or_gradient(official, ref):
    # Two frames with different hit counts (the packed batch is padded); the official weights leave most of the
    # (ray, manifold) slots empty, so the skipped path really skips: the FiLM-SIREN, and the recorded deformation
    # and sampler, at the crossings only.
    evaluated: list[int] = []
    hook = official.generator.siren.register_forward_pre_hook(lambda _m, a: evaluated.append(a[0].shape[1]))
    params = [p for p in official.generator.parameters()]
    outputs = {}
    try:
        for skip in (False, True):
            official.config = replace(official.config, render=replace(official.config.render, skip_empty_samples=skip))
            evaluated.clear()
            for p in params:
                p.grad = None
            official.generator.requires_grad_(True)
            z_id = ref["z_id"].clone().requires_grad_()        # stage 1's path: through the deformation too
            r = official.render(z_id, ref["z_exp"], ref["noise"], 10.0, -5.0, 16, psi=1.0)
            (r.image.square().mean() + r.depth.mean()).backward()
            outputs[skip] = (r.image.detach(), r.depth.detach(), [p.grad.clone() for p in params] + [z_id.grad],
                             sum(evaluated))
    finally:
        hook.remove()
        official.generator.requires_grad_(False)
        official.config = replace(official.config, render=replace(official.config.render, skip_empty_samples=True))
    (img0, depth0, grads0, n0), (img1, depth1, grads1, n1) = outputs[False], outputs[True]
    slots = 16 * 16 * (official.config.render.num_levels + 1)
    assert n0 == slots and n1 < 0.5 * slots
    assert close(img0, img1) <= 1e-6 and close(depth0, depth1) <= 1e-6
    for g0, g1 in zip(grads0, grads1):
        assert close(g0, g1) <= 1e-5 * max(1.0, g0.abs().max().item())
