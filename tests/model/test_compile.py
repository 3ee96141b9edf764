"""torch.compile of a backbone's hot paths: opt-in, same renders, and eager execution when compiling fails."""
from __future__ import annotations

import logging

import torch

from artmator.model import load_backbone
from artmator.model.compile import CompiledOrEager
from artmator.model.lora import DeltaConfig, attach_adapters

RES = 12


def _render(backbone, latent, grad: bool = False):
    if grad:
        return backbone.render_latent(latent, 10.0, -5.0, RES)
    with torch.no_grad():
        return backbone.render_latent(latent, 10.0, -5.0, RES)


def _setup():
    backbone = load_backbone("tiny")
    latent = backbone.sample_latent(2, torch.Generator().manual_seed(3))
    return backbone, latent


def test_compiling_is_off_by_default_and_can_be_switched_off_again():
    backbone, _ = _setup()
    assert backbone.compile_backend is None and "_render_rays" not in vars(backbone)
    backbone.set_compile(True, "eager")
    assert isinstance(vars(backbone)["_render_rays"], CompiledOrEager) and backbone.compile_backend == "eager"
    backbone.set_compile(False)
    assert backbone.compile_backend is None and "_render_rays" not in vars(backbone)


def test_an_unknown_backend_warns_once_and_renders_eagerly(caplog):
    backbone, latent = _setup()
    eager = _render(backbone, latent)
    with caplog.at_level(logging.WARNING, logger="artmator.model.compile"):
        backbone.set_compile(True, "no-such-backend")
        first, second = _render(backbone, latent), _render(backbone, latent)
    warnings = [r for r in caplog.records if "no-such-backend" in r.getMessage()]
    assert len(warnings) == 1 and "running it eagerly" in warnings[0].getMessage()
    assert torch.equal(first.image, eager.image) and torch.equal(second.depth, eager.depth)


def test_a_compiled_render_matches_eager_with_and_without_gradients():
    # aot_eager: the real graph capture and autograd tracing of torch.compile, without a C++ compiler (fast on CI)
    backbone, latent = _setup()
    eager = _render(backbone, latent)
    z_id = latent["z_id"].clone().requires_grad_()
    _render(backbone, {**latent, "z_id": z_id}, grad=True).image.square().sum().backward()
    eager_grad = z_id.grad.clone()

    backbone.set_compile(True, "aot_eager")
    compiled = _render(backbone, latent)
    z_id.grad = None
    _render(backbone, {**latent, "z_id": z_id}, grad=True).image.square().sum().backward()
    assert vars(backbone)["_render_rays"].failure is None
    assert (compiled.image - eager.image).abs().max() <= 1e-5
    assert (compiled.depth - eager.depth).abs().max() <= 1e-5
    assert torch.allclose(z_id.grad, eager_grad, rtol=1e-4, atol=1e-6)


def test_the_tuned_generator_keeps_the_compile_setting():
    backbone, latent = _setup()
    backbone.set_compile(True, "aot_eager")
    tuned = backbone.with_tunable(attach_adapters(backbone.tunable(), DeltaConfig(), 2, [0, 1]))
    assert tuned.compile_backend == "aot_eager"
    assert (_render(tuned, latent).image - _render(backbone, latent).image).abs().max() <= 1e-5
