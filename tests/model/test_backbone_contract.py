"""One suite over every shipped CPU-sized backbone: what generic code relies on holds for each (`model.backbone`).

"tiny" is AniFaceGAN at small widths (FiLM-SIREN + radiance manifolds, linear layers only); "triplane-tiny" is an
EG3D-style tri-plane generator (modulated convolutions + decoder MLP + volume rendering). The same tests, the
same generic code (stages, LoRA, deltas, weight loading), two differently built generators.
"""
from __future__ import annotations

import copy
import io

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from artmator.model import WeightsError, load_backbone
from artmator.model.backbone import Backbone, ExpressionError
from artmator.model.delta import DeltaMetadata, apply_delta, load_delta, merge_delta, painting_delta, save_delta
from artmator.model.encoders import TINY_CLIP, LpipsConfig, load_clips, load_lpips
from artmator.model.localize import LocalizeConfig, localize
from artmator.model.lora import DeltaConfig, attach_adapters, lora_layers, trainable_parameters
from artmator.model.registry import backbone_entry
from artmator.model.stylize import StylizeConfig, stylize

PRESETS = ("tiny", "triplane-tiny")
RES = 16


@pytest.fixture(scope="module", params=PRESETS)
def backbone(request) -> Backbone:
    b = load_backbone(request.param, seed=0)
    b.requires_grad_(False)
    return b


@pytest.fixture(scope="module")
def nets():
    return load_clips([TINY_CLIP]), load_lpips(LpipsConfig(net="alex", random_backbone=True))


def _latent(b: Backbone, n: int, seed: int = 1):
    return b.sample_latent(n, torch.Generator().manual_seed(seed))


def _render(b: Backbone, latent, yaw=10.0, pitch=-5.0, res=RES) -> torch.Tensor:
    with torch.no_grad():
        return b.render_latent(latent, yaw, pitch, res).image


def _tunable_name(b: Backbone) -> str:
    [name] = [n for n, child in b.named_children() if child is b.tunable()]
    return name


def _fixed_parameters(b: Backbone) -> dict[str, nn.Parameter]:
    prefix = _tunable_name(b) + "."
    return {n: p for n, p in b.named_parameters() if not n.startswith(prefix)}


def _perturb(module: nn.Module, index: int, seed: int, std: float = 0.05) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(module).values():
            layer.lora_B[index].copy_(torch.randn(layer.lora_B[index].shape, generator=g) * std)


# ---- the declared facts ------------------------------------------------------------------------------------
def test_the_contract_is_declared_and_registered(backbone):
    entry = backbone_entry(backbone.preset)
    assert backbone.WEIGHT_PARTS == entry.parts and entry.demo
    assert "generator" in backbone.WEIGHT_PARTS and backbone.part("generator") is backbone.tunable()
    assert isinstance(backbone.default_resolution, int) and backbone.default_resolution >= 32
    assert len(backbone.base_hash()) == 64
    assert backbone.adapter_targets and all(issubclass(k, nn.Module) for k in backbone.adapter_targets)
    with pytest.raises(ValueError, match="unknown weight part 'nope'"):
        backbone.part("nope")


def test_sample_and_render_shapes_and_ranges(backbone):
    latent = _latent(backbone, 2)
    assert set(backbone.inverted_latents) <= set(latent)
    assert all(v.dim() == 2 and v.shape[0] == 2 and not v.requires_grad for v in latent.values())
    with torch.no_grad():
        out = backbone.render_latent(latent, torch.tensor([0.0, 20.0]), torch.tensor([0.0, -10.0]), RES)
        truncated = backbone.render_latent(latent, 0.0, 0.0, RES, psi=0.5).image
    assert out.image.shape == (2, 3, RES, RES) and out.depth.shape == out.opacity.shape == (2, 1, RES, RES)
    assert torch.isfinite(out.image).all() and out.image.abs().max() <= 1.01
    assert torch.isfinite(out.depth).all() and out.depth.min() > 0
    assert out.opacity.min() >= 0 and out.opacity.max() <= 1 + 1e-5
    assert not torch.equal(out.image[0], out.image[1]), "two latents at two views render the same image"
    assert not torch.equal(truncated, _render(backbone, latent, 0.0, 0.0)), "psi changes nothing"


def test_seed_decides_everything(backbone):
    again = load_backbone(backbone.preset, seed=0)
    other = load_backbone(backbone.preset, seed=1)
    assert again.base_hash() == backbone.base_hash() != other.base_hash()
    assert all(torch.equal(a, b) for a, b in zip(_latent(again, 2).values(), _latent(backbone, 2).values()))
    assert torch.equal(_render(again, _latent(again, 2)), _render(backbone, _latent(backbone, 2)))
    assert not torch.equal(_render(other, _latent(other, 2)), _render(backbone, _latent(backbone, 2)))


def test_with_tunable_shares_every_fixed_part(backbone):
    module = copy.deepcopy(backbone.tunable())
    other = backbone.with_tunable(module)
    assert other.tunable() is module and other.preset == backbone.preset
    fixed, theirs = _fixed_parameters(backbone), dict(other.named_parameters())
    assert fixed, "a backbone needs fixed parts beside its tunable generator"
    assert all(theirs[n] is p for n, p in fixed.items())
    assert torch.equal(_render(other, _latent(backbone, 2)), _render(backbone, _latent(backbone, 2)))


def test_base_hash_follows_the_tunable_weights_only(backbone):
    b = load_backbone(backbone.preset, seed=0)
    before = b.base_hash()
    with torch.no_grad():
        next(iter(_fixed_parameters(b).values())).add_(1.0)
    assert b.base_hash() == before, "a fixed part changed the base hash"
    with torch.no_grad():
        next(b.tunable().parameters()).add_(1e-3)
    assert b.base_hash() != before


# ---- adapters ----------------------------------------------------------------------------------------------
def _expected_targets(b: Backbone) -> list[str]:
    excluded = [n + "." for n, m in b.tunable().named_modules() if b.adapter_exclusions and
                isinstance(m, b.adapter_exclusions)]
    return [n for n, m in b.tunable().named_modules()
            if isinstance(m, b.adapter_targets) and not any(n.startswith(e) for e in excluded)]


def test_lora_puts_adapters_on_every_declared_target_and_nowhere_else(backbone):
    adapted = attach_adapters(backbone.tunable(), DeltaConfig(), 2, seed=0)
    layers = lora_layers(adapted)
    assert list(layers) == _expected_targets(backbone) != []
    kinds = {k for k in backbone.adapter_targets if any(isinstance(m, k) for m in backbone.tunable().modules())}
    assert {type(layer.base) for layer in layers.values()} == kinds, "a declared layer kind got no adapter"
    assert all(("lora_" in n) == p.requires_grad for n, p in adapted.named_parameters())
    latent = _latent(backbone, 2)
    g_trn = backbone.with_tunable(adapted)
    reference = _render(backbone, latent)
    assert torch.equal(_render(g_trn, latent), reference), "fresh adapters must be an exact no-op"
    _perturb(adapted, 1, seed=3)
    image = _render(g_trn, latent)
    assert torch.equal(image[0], reference[0]) and (image[1] - reference[1]).abs().max() > 1e-4


def test_an_empty_adapter_target_set_is_refused(backbone):
    module = copy.deepcopy(backbone.tunable())
    module.ADAPTER_TARGETS = ()
    with pytest.raises(ValueError, match="empty ADAPTER_TARGETS .*--delta-mode full"):
        attach_adapters(module, DeltaConfig(), 1, seed=0)


# ---- the two stages ----------------------------------------------------------------------------------------
def test_stage1_reduces_its_loss(backbone, nets):
    target = _render(backbone, _latent(backbone, 1, seed=7), 0.0, 0.0, 32)
    result = localize(backbone, target, torch.zeros(1), torch.zeros(1), nets[1], LocalizeConfig(steps=12),
                      torch.Generator().manual_seed(0))
    assert result.losses.shape == (12, 1) and result.failed_step == [None]
    assert result.final_loss[0] < result.losses[0, 0]
    assert set(result.latent) >= set(backbone.inverted_latents)


def test_stage2_tunes_the_adapters_a_few_steps(backbone, nets):
    latent = _latent(backbone, 2)
    reference = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    module = attach_adapters(backbone.tunable(), DeltaConfig(rank=2), 2, [0, 1])
    result = stylize(backbone, backbone.with_tunable(module), list(trainable_parameters(module)), latent, reference,
                     torch.zeros(2), torch.zeros(2), nets[0], nets[1], StylizeConfig(steps=2), 2e-3,
                     torch.Generator().manual_seed(0))
    assert set(result.losses) == {"dir", "spa", "total"} and result.losses["total"].shape == (2, 2)
    assert torch.isfinite(result.losses["total"]).all() and result.failed_step == [None, None]
    assert all(layer.lora_B.abs().max() > 0 for layer in lora_layers(module).values())


# ---- deltas ------------------------------------------------------------------------------------------------
def test_delta_save_load_apply_and_merge_reproduce_the_tuned_renders(backbone, tmp_path):
    config = DeltaConfig(storage_dtype="float32")
    latent = _latent(backbone, 2)
    adapted = attach_adapters(backbone.tunable(), config, 2, seed=[5, 6])
    _perturb(adapted, 1, seed=4)
    tuned = _render(backbone.with_tunable(adapted), latent)[1:]
    painting = {n: v[1:] for n, v in latent.items()}
    meta = DeltaMetadata(base_sha256=backbone.base_hash(), preset=backbone.preset, config=config, latent=painting,
                         yaw_deg=10.0, pitch_deg=-5.0, seed=6)
    save_delta(str(tmp_path / "d.safetensors"), painting_delta(adapted, 1, meta).tensors, meta)
    delta = load_delta(str(tmp_path / "d.safetensors"))
    rendered = _render(apply_delta(backbone, delta), {n: v for n, v in delta.metadata.latent.items()})
    torch.testing.assert_close(rendered, tuned, atol=1e-5, rtol=1e-4)
    fresh = copy.deepcopy(backbone.tunable())
    fresh.load_state_dict(merge_delta(backbone, delta), strict=True)
    torch.testing.assert_close(_render(backbone.with_tunable(fresh), painting), tuned, atol=1e-4, rtol=1e-4)


# ---- weights -----------------------------------------------------------------------------------------------
def _write_parts(b: Backbone, folder) -> dict[str, str]:
    paths = {}
    for part in b.WEIGHT_PARTS:
        paths[part] = str(folder / f"{part}.safetensors")
        save_file({k: v.contiguous() for k, v in b.part(part).state_dict().items()}, paths[part])
    return paths


def test_weights_round_trip_through_the_loading_code(backbone, tmp_path):
    loaded = load_backbone(backbone.preset, weights=_write_parts(backbone, tmp_path), seed=123)
    assert loaded.base_hash() == backbone.base_hash()
    assert torch.equal(_render(loaded, _latent(loaded, 2)), _render(backbone, _latent(backbone, 2)))


def test_strict_loading_refuses_a_wrong_file_clearly(backbone, tmp_path):
    other = load_backbone(next(p for p in PRESETS if p != backbone.preset), seed=0)
    wrong = tmp_path / "other-generator.safetensors"
    save_file({k: v.contiguous() for k, v in other.tunable().state_dict().items()}, str(wrong))
    with pytest.raises(WeightsError, match=r"generator: .*other-generator.safetensors does not fit this model "
                                           r"\(missing keys .*unexpected keys"):
        load_backbone(backbone.preset, weights={"generator": str(wrong)})
    payload = tmp_path / "payload.pth"
    buf = io.BytesIO()
    torch.save({"state": {"w": torch.zeros(1)}, "hook": print}, buf)   # a pickle naming a callable
    payload.write_bytes(buf.getvalue())
    with pytest.raises(WeightsError, match="generator: .*payload.pth was refused"):
        load_backbone(backbone.preset, weights={"generator": str(payload)})
    with pytest.raises(WeightsError, match="does not exist"):
        load_backbone(backbone.preset, weights={"generator": str(tmp_path / "missing.safetensors")})


# ---- expressions -------------------------------------------------------------------------------------------
def test_expression_support_is_declared_and_honoured(backbone):
    latent = _latent(backbone, 1)
    if backbone.supports_expressions:
        assert backbone.default_expressions
        code = backbone.load_expression(backbone.default_expressions[0])
        edited = backbone.with_expression(latent, code)
        assert edited.keys() == latent.keys() and any(not torch.equal(edited[k], latent[k]) for k in latent)
        assert torch.isfinite(_render(backbone, edited)).all()     # (random weights need not move the face)
    else:
        assert backbone.default_expressions == ()
        with pytest.raises(ExpressionError, match=f"the {backbone.preset} backbone has no expression codes"):
            backbone.load_expression("happiness")
        with pytest.raises(ExpressionError, match="no expression codes"):
            backbone.with_expression(latent, torch.zeros(64))
