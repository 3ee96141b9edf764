"""Batched per-painting LoRA adapters: exact no-op at init, per-element isolation, batching, gradients."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from artmator.model.lora import (BatchedLoRAConv2d, BatchedLoRALinear, DeltaConfig, adapter_state, attach_adapters,
                                 effective_weight, load_adapter, lora_layers, merged_state_dict, target_layers,
                                 trainable_parameters)

RES = 16  # render resolution for the tiny backbone


def _latents(backbone, n: int, seed: int = 1):
    return backbone.sample_latent(n, torch.Generator().manual_seed(seed))


def _perturb(module: nn.Module, index: int, seed: int, std: float = 0.05) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(module).values():
            layer.lora_B[index].copy_(torch.randn(layer.lora_B[index].shape, generator=g) * std)


def _render(backbone, latent, yaw=10.0, pitch=-5.0):
    with torch.no_grad():
        return backbone.render_latent(latent, yaw, pitch, RES).image


# ---- config ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {"rank": 0}, {"rank": 2.0}, {"rank": True}, {"alpha": 0.0}, {"alpha": float("nan")}, {"mode": "qlora"},
    {"storage_dtype": "bfloat16"}, {"include_mapping": "yes"},
])
def test_config_rejects_invalid(kwargs):
    with pytest.raises(ValueError):
        DeltaConfig(**kwargs)


def test_config_json_round_trip_and_scale():
    cfg = DeltaConfig(rank=8, alpha=4.0, include_mapping=True, storage_dtype="float32")
    assert DeltaConfig.from_json(cfg.to_json()) == cfg
    assert cfg.scale == 0.5 and DeltaConfig().scale == 1.0
    with pytest.raises(ValueError, match="unknown DeltaConfig fields"):
        DeltaConfig.from_json('{"rank": 4, "dropout": 0.1}')


# ---- the layer ---------------------------------------------------------------------------------------------
def _layer(k: int = 3, rank: int = 4, in_f: int = 7, out_f: int = 5) -> BatchedLoRALinear:
    torch.manual_seed(0)
    return BatchedLoRALinear(nn.Linear(in_f, out_f), k, rank, scale=0.5, seeds=range(10, 10 + k))


def test_layer_fresh_is_exact_noop_and_exposes_base():
    layer = _layer()
    x = torch.randn(3, 11, 7)
    assert torch.equal(layer(x), layer.base(x))
    assert layer.weight is layer.base.weight and layer.bias is layer.base.bias
    assert layer.lora_A.shape == (3, 4, 7) and layer.lora_B.shape == (3, 5, 4)
    assert layer.lora_A.abs().max() > 0 and torch.count_nonzero(layer.lora_B) == 0


def test_layer_batched_equals_per_adapter_and_matches_formula():
    layer = _layer()
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(3, 2, 11, 7)                          # (K, extra, N, in)
    out = layer(x)
    for k in range(3):
        single = BatchedLoRALinear(layer.base, 1, 4, scale=0.5)
        with torch.no_grad():
            single.lora_A.copy_(layer.lora_A[k:k + 1])
            single.lora_B.copy_(layer.lora_B[k:k + 1])
        torch.testing.assert_close(out[k], single(x[k:k + 1])[0])
        expected = layer.base(x[k]) + 0.5 * x[k] @ (layer.lora_B[k] @ layer.lora_A[k]).T
        torch.testing.assert_close(out[k], expected)


def test_layer_single_adapter_broadcasts_and_batch_mismatch_is_refused():
    single = _layer(k=1)
    with torch.no_grad():
        single.lora_B.normal_()
    x = torch.randn(4, 6, 7)
    torch.testing.assert_close(single(x), single.base(x) + x @ single.delta_weight(0).T)
    with pytest.raises(ValueError, match="first dimension must be 3"):
        _layer(k=3)(torch.randn(2, 6, 7))


def test_layer_rank_is_clamped_to_matrix_rank():
    assert _layer(rank=16, in_f=7, out_f=5).rank == 5
    assert _layer(rank=4, in_f=256, out_f=1).lora_B.shape == (3, 1, 1)


# ---- attaching to the generator ----------------------------------------------------------------------------
def test_attach_leaves_original_untouched_and_shares_storage(tiny_backbone):
    g = tiny_backbone.tunable()
    before = {n: (p, p.requires_grad) for n, p in g.named_parameters()}
    adapted = attach_adapters(g, DeltaConfig(), 2, seed=0)
    assert not lora_layers(g), "the original generator must not be modified"
    assert {n: (p, p.requires_grad) for n, p in g.named_parameters()} == before
    base = dict(g.named_parameters())
    for name, layer in lora_layers(adapted).items():
        assert layer.weight.data_ptr() == base[f"{name}.weight"].data_ptr(), "base weights must not be copied"
        assert layer.weight is not base[f"{name}.weight"]
    assert all(("lora_" in n) == p.requires_grad for n, p in adapted.named_parameters())
    assert all(p.requires_grad for p in trainable_parameters(adapted))


def test_include_rule(tiny_backbone):
    g = tiny_backbone.tunable()
    default = target_layers(g, DeltaConfig())
    with_map = target_layers(g, DeltaConfig(include_mapping=True))
    assert not any("mapping_network" in n for n in default)
    assert {"siren.network.0.layer", "siren.output_sigma.0", "siren.color_layer_sine.0.layer", "siren.output_color.2",
            "model_sample.network.0", "model_sample.output_layer"} <= set(default)
    assert sorted(set(with_map) - set(default)) == [f"siren.mapping_network.network.{i}" for i in (0, 2, 4, 6)]
    all_linears = [n for n, m in g.named_modules() if isinstance(m, nn.Linear)]
    assert sorted(with_map) == sorted(all_linears)
    with pytest.raises(ValueError, match="already has adapters"):
        attach_adapters(attach_adapters(g, DeltaConfig(), 1, 0), DeltaConfig(), 1, 0)


def test_adapter_init_depends_only_on_its_own_seed(tiny_backbone):
    g = tiny_backbone.tunable()
    alone = adapter_state(attach_adapters(g, DeltaConfig(), 1, seed=[7]), 0)
    batched = adapter_state(attach_adapters(g, DeltaConfig(), 3, seed=[5, 7, 9]), 1)
    assert alone.keys() == batched.keys()
    assert all(torch.equal(alone[n], batched[n]) for n in alone)
    other = adapter_state(attach_adapters(g, DeltaConfig(), 1, seed=[8]), 0)
    assert not torch.equal(alone["siren.network.1.layer.lora_A"], other["siren.network.1.layer.lora_A"])


# ---- rendering through adapters ----------------------------------------------------------------------------
@pytest.mark.parametrize("include_mapping", [False, True])
def test_fresh_adapters_render_identically(tiny_backbone, include_mapping):
    latent = _latents(tiny_backbone, 3)
    adapted = attach_adapters(tiny_backbone.tunable(), DeltaConfig(include_mapping=include_mapping), 3, seed=0)
    assert torch.equal(_render(tiny_backbone.with_tunable(adapted), latent), _render(tiny_backbone, latent))


@pytest.mark.parametrize("include_mapping", [False, True])
def test_perturbing_adapter_k_changes_only_element_k(tiny_backbone, include_mapping):
    latent = _latents(tiny_backbone, 3)
    adapted = attach_adapters(tiny_backbone.tunable(), DeltaConfig(include_mapping=include_mapping), 3, seed=0)
    reference = _render(tiny_backbone, latent)
    _perturb(adapted, 1, seed=3)
    image = _render(tiny_backbone.with_tunable(adapted), latent)
    assert torch.equal(image[0], reference[0]) and torch.equal(image[2], reference[2])
    assert (image[1] - reference[1]).abs().max() > 1e-3
    assert torch.equal(_render(tiny_backbone, latent), reference), "G_ori must stay unchanged"


def test_batched_render_equals_single_adapter_renders(tiny_backbone):
    cfg = DeltaConfig(include_mapping=True)
    latent = _latents(tiny_backbone, 3)
    adapted = attach_adapters(tiny_backbone.tunable(), cfg, 3, seed=0)
    for k in range(3):
        _perturb(adapted, k, seed=10 + k)
    batched = _render(tiny_backbone.with_tunable(adapted), latent)
    for k in range(3):
        single = attach_adapters(tiny_backbone.tunable(), cfg, 1, seed=0)
        load_adapter(single, 0, adapter_state(adapted, k))
        one = _render(tiny_backbone.with_tunable(single), {n: t[k:k + 1] for n, t in latent.items()})
        torch.testing.assert_close(batched[k:k + 1], one, atol=1e-5, rtol=1e-4)


def test_only_adapters_get_gradients(tiny_backbone):
    g = tiny_backbone.tunable()
    adapted = attach_adapters(g, DeltaConfig(), 2, seed=0)
    _perturb(adapted, 0, seed=1)
    image = tiny_backbone.with_tunable(adapted).render_latent(_latents(tiny_backbone, 2), 0.0, 0.0, 8).image
    image.square().mean().backward()
    for name, p in adapted.named_parameters():
        if "lora_" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    assert all(p.grad is None for p in g.parameters()), "the base generator must get no gradient"


def test_full_mode_is_a_trainable_deep_copy(tiny_backbone):
    g = tiny_backbone.tunable()
    full = attach_adapters(g, DeltaConfig(mode="full"), 1, seed=0)
    assert not lora_layers(full)
    assert all(p.requires_grad for p in full.parameters())
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(full.parameters(), g.parameters()))
    with pytest.raises(ValueError, match="one painting per generator copy"):
        attach_adapters(g, DeltaConfig(mode="full"), 2, seed=0)
    with pytest.raises(IndexError):
        adapter_state(full, 1)


def test_merged_state_dict_folds_adapter_and_loads_strictly(tiny_backbone):
    from artmator.model.anifacegan.model import build_parts

    latent = _latents(tiny_backbone, 2)
    adapted = attach_adapters(tiny_backbone.tunable(), DeltaConfig(include_mapping=True), 2, seed=0)
    _perturb(adapted, 1, seed=4)
    fresh = build_parts(tiny_backbone.config)["generator"]
    fresh.load_state_dict(merged_state_dict(adapted, 1), strict=True)
    merged = _render(tiny_backbone.with_tunable(fresh), latent)
    torch.testing.assert_close(merged[1], _render(tiny_backbone.with_tunable(adapted), latent)[1],
                               atol=1e-4, rtol=1e-4)


def test_a_tunable_module_without_adapter_targets_is_an_error_not_an_empty_optimizer():
    class ConvOnly(nn.Module):            # declares no targets: the default kind (nn.Linear) finds nothing
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3)

    with pytest.raises(ValueError, match="no nn.Linear layer .*--delta-mode full"):
        attach_adapters(ConvOnly(), DeltaConfig(), 1, 0)
    nothing = ConvOnly()
    nothing.ADAPTER_TARGETS = ()          # an empty target set is refused, not an empty optimizer
    with pytest.raises(ValueError, match="empty ADAPTER_TARGETS .*--delta-mode full"):
        attach_adapters(nothing, DeltaConfig(), 1, 0)

    class AllExcluded(nn.Module):
        ADAPTER_EXCLUSIONS = (nn.Sequential,)

        def __init__(self):
            super().__init__()
            self.mapping = nn.Sequential(nn.Linear(4, 4))

    with pytest.raises(ValueError, match=r"outside \['Sequential'\]"):
        attach_adapters(AllExcluded(), DeltaConfig(), 1, 0)
    assert len(list(trainable_parameters(attach_adapters(AllExcluded(), DeltaConfig(include_mapping=True), 1, 0)))) == 2


def test_declared_kinds_without_a_lora_layer_are_refused():
    class Norm(nn.Module):
        ADAPTER_TARGETS = (nn.LayerNorm,)

        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(4)

    with pytest.raises(ValueError, match="declares adapter target 'LayerNorm'.*nn.Linear or nn.Conv2d only"):
        attach_adapters(Norm(), DeltaConfig(), 1, 0)

    class ScaledLinear(nn.Linear):        # its own forward: an adapter wrapping it would bypass the scaling
        def forward(self, x):
            return super().forward(x) * 2

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = ScaledLinear(4, 4)

    with pytest.raises(ValueError, match="fc is a ScaledLinear.*own forward"):
        attach_adapters(Scaled(), DeltaConfig(), 1, 0)

    class Grouped(nn.Module):
        ADAPTER_TARGETS = (nn.Conv2d,)

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, groups=2)

    with pytest.raises(ValueError, match="groups=1"):
        attach_adapters(Grouped(), DeltaConfig(), 1, 0)


# ---- convolution adapters ----------------------------------------------------------------------------------
def _conv_layer(k: int = 3, rank: int = 4, **conv) -> BatchedLoRAConv2d:
    torch.manual_seed(0)
    base = nn.Conv2d(5, 6, 3, **conv)
    return BatchedLoRAConv2d(base, k, rank, scale=0.5, seeds=range(10, 10 + k))


@pytest.mark.parametrize("conv", [{}, {"stride": 2, "padding": 1}, {"padding": 2, "dilation": 2, "bias": False}])
def test_conv_layer_is_a_noop_fresh_and_equals_the_merged_conv(conv):
    layer = _conv_layer(**conv)
    x = torch.randn(3, 5, 9, 9)
    assert torch.equal(layer(x), layer.base(x))
    assert layer.lora_A.shape == (3, 4, 5, 3, 3) and layer.lora_B.shape == (3, 6, 4)
    with torch.no_grad():
        layer.lora_B.normal_()
    out = layer(x)                                                         # K = 3: one image per adapter
    for k in range(3):
        merged = nn.functional.conv2d(x[k:k + 1], layer.weight + layer.delta_weight(k), layer.bias,
                                      layer.base.stride, layer.base.padding, layer.base.dilation)
        torch.testing.assert_close(out[k:k + 1], merged, atol=1e-5, rtol=1e-4)
        single = BatchedLoRAConv2d(layer.base, 1, 4, scale=0.5)
        with torch.no_grad():
            single.lora_A.copy_(layer.lora_A[k:k + 1])
            single.lora_B.copy_(layer.lora_B[k:k + 1])
        torch.testing.assert_close(single(x[k:k + 1].expand(2, -1, -1, -1)), merged.expand(2, -1, -1, -1),
                                   atol=1e-5, rtol=1e-4)   # one adapter broadcasts over any batch
    with pytest.raises(ValueError, match="first dimension must be 3"):
        layer(torch.randn(2, 5, 9, 9))


def test_conv_rank_is_clamped_and_only_adapters_train():
    assert _conv_layer(rank=64).rank == 6                                  # min(r, in·kh·kw = 45, out = 6)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    model.ADAPTER_TARGETS = (nn.Conv2d,)
    adapted = attach_adapters(model, DeltaConfig(rank=2), 2, seed=0)
    assert sorted(lora_layers(adapted)) == ["0", "2"]
    _perturb(adapted, 1, seed=0)
    adapted(torch.randn(2, 3, 5, 5)).square().sum().backward()
    assert all((p.grad is not None) == ("lora_" in n) for n, p in adapted.named_parameters())
    fresh = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    fresh.load_state_dict(merged_state_dict(adapted, 1), strict=True)
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(fresh(x[1:]), adapted(x)[1:], atol=1e-5, rtol=1e-4)


def test_the_backbone_declares_its_adapter_exclusions(tiny_backbone):
    from artmator.model.anifacegan.film import MappingNetwork

    assert tiny_backbone.adapter_exclusions == (MappingNetwork,)


def test_effective_weight_is_what_each_batch_element_applies():
    layer = _conv_layer(k=2)
    with torch.no_grad():
        layer.lora_B.normal_()
    weights = effective_weight(layer)                                      # (K, out, in, kh, kw)
    assert weights.shape == (2, *layer.weight.shape)
    for k in range(2):
        torch.testing.assert_close(weights[k], layer.weight + layer.delta_weight(k))
    plain = nn.Linear(3, 2)
    assert torch.equal(effective_weight(plain), plain.weight[None])
