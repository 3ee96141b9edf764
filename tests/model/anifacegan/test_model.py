"""The AniFaceGAN backbone's public behaviour: presets, latents, expressions, speed of the tiny preset."""
from __future__ import annotations

import time

import pytest
import torch

from artmator.model import load_backbone, load_expression
from artmator.model.anifacegan.expressions import ExpressionError, expression_from_vector, load_mat_coefficients


def test_tiny_renders_64px_well_under_a_second_on_one_core(tiny_backbone):
    latent = tiny_backbone.sample_latent(1, torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            tiny_backbone.render_latent(latent, 0.0, 0.0, 64)  # warm-up
            start = time.perf_counter()
            result = tiny_backbone.render_latent(latent, 0.0, 0.0, 64)
            seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    assert result.image.shape == (1, 3, 64, 64) and result.depth.shape == (1, 1, 64, 64)
    assert seconds < 0.5, f"tiny 64x64 render took {seconds:.3f} s"


def test_images_are_in_range_and_views_differ(tiny_backbone):
    latent = tiny_backbone.sample_latent(2, torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = tiny_backbone.render_latent(latent, torch.tensor([-20.0, 0.0]), 0.0, 24).image
        b = tiny_backbone.render_latent(latent, torch.tensor([20.0, 0.0]), 0.0, 24).image
    assert a.min() >= -1.01 and a.max() <= 1.01
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])


def test_same_seed_same_backbone_and_latents():
    a, b = load_backbone("tiny", seed=5), load_backbone("tiny", seed=5)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert a.base_hash() == b.base_hash() != load_backbone("tiny", seed=6).base_hash()
    la = a.sample_latent(2, torch.Generator().manual_seed(1))
    lb = b.sample_latent(2, torch.Generator().manual_seed(1))
    assert all(torch.equal(la[k], lb[k]) for k in la)


def test_seed_does_not_disturb_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_backbone("tiny", seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_with_tunable_shares_fixed_parts(tiny_backbone):
    import copy

    other = tiny_backbone.with_tunable(copy.deepcopy(tiny_backbone.generator))
    assert other.deform is tiny_backbone.deform and other.vae_id is tiny_backbone.vae_id
    assert other.generator is not tiny_backbone.generator


def test_official_smile_expression_from_mat(anifacegan_fixtures):
    mat = load_mat_coefficients(str(anifacegan_fixtures / "expression_smile_01626.mat"))
    assert mat["id"].shape == (1, 80) and mat["exp"].shape == (1, 64)
    smile = load_expression(str(anifacegan_fixtures / "expression_smile_01626.mat"))
    assert smile.shape == (64,) and torch.equal(smile, load_expression("happiness"))
    assert torch.equal(load_expression("neutral"), torch.zeros(64))


def test_expression_changes_the_render_with_official_deformation(anifacegan_fixtures):
    b = load_backbone("anifacegan", weights={"deform": str(anifacegan_fixtures / "dif.pth")})
    latent = b.sample_latent(1, torch.Generator().manual_seed(0))
    smiling = b.with_expression(latent, load_expression("happiness"))
    with torch.no_grad():
        neutral_img = b.render_latent(latent, 0.0, 0.0, 16).image
        smile_img = b.render_latent(smiling, 0.0, 0.0, 16).image
    assert (neutral_img - smile_img).abs().max() > 1e-4


def test_bad_expressions_have_clear_errors(tmp_path):
    with pytest.raises(ExpressionError, match="64 coefficients, got 3"):
        expression_from_vector([1, 2, 3])
    with pytest.raises(ExpressionError, match="finite"):
        expression_from_vector([float("nan")] * 64)
    with pytest.raises(ExpressionError, match="unknown expression 'grumpy'"):
        load_expression("grumpy")
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file at all")
    with pytest.raises(ExpressionError, match="not a readable MATLAB"):
        load_expression(str(bad))
    with pytest.raises(ExpressionError, match="does not exist"):
        load_expression(str(tmp_path / "missing.mat"))


def test_vae_sampling_decodes_to_coefficients(tiny_backbone):
    z = tiny_backbone.vae_id.sample(3, torch.Generator().manual_seed(0))
    assert z.shape == (3, 80)
    mu, logvar = tiny_backbone.vae_id.encode(z)
    assert mu.shape == logvar.shape == (3, tiny_backbone.config.vae_latent)
    assert tiny_backbone.sample_expression(2, torch.Generator().manual_seed(0)).shape == (2, 64)
