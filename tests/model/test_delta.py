"""Delta files: round trip, base/preset binding, refusal of foreign files, merge, full mode, footprint."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from artmator.model import load_backbone
from artmator.model.anifacegan.model import build_parts
from artmator.model.delta import (FORMAT_VERSION, Delta, DeltaConfig, DeltaError, DeltaMetadata, adapter_state, apply_delta,
                         apply_deltas, attach_adapters, delta_latent, delta_latents, encode_delta, load_delta,
                         merge_delta, save_delta)
from artmator.model.lora import lora_layers

RES = 16


def _latent(backbone, seed: int = 1):
    return backbone.sample_latent(1, torch.Generator().manual_seed(seed))


def _tuned(backbone, config: DeltaConfig, k: int = 1, seed: int = 0):
    """A generator whose adapters (or full weights) moved away from the base, as after stage 2."""
    module = attach_adapters(backbone.tunable(), config, k, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        if config.mode == "full":
            for p in module.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 1e-2 * p.abs().mean())
        else:
            for layer in lora_layers(module).values():
                layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.05)
    return module


def _metadata(backbone, config: DeltaConfig, latent=None, **kw) -> DeltaMetadata:
    return DeltaMetadata(base_sha256=backbone.base_hash(), preset=backbone.preset, config=config,
                         latent=latent if latent is not None else _latent(backbone), yaw_deg=12.5, pitch_deg=-3.25,
                         seed=kw.pop("seed", 0), resolved_config=json.dumps({"stage2": {"steps": 300}}), **kw)


def _render(backbone, latent):
    with torch.no_grad():
        return backbone.render_latent(latent, 12.5, -3.25, RES).image


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_round_trip(tiny_backbone, tmp_path, storage):
    cfg = DeltaConfig(storage_dtype=storage, include_mapping=True)
    tensors = adapter_state(_tuned(tiny_backbone, cfg), 0)
    meta = _metadata(tiny_backbone, cfg, seed=5)
    path = tmp_path / "sub" / "painting.delta.safetensors"
    n = save_delta(str(path), tensors, meta)
    assert n == path.stat().st_size

    delta = load_delta(str(path))
    assert delta.nbytes == n and delta.metadata == meta
    assert (delta.metadata.mode, delta.metadata.rank, delta.metadata.alpha) == ("lora", 4, 4.0)
    assert delta.metadata.format_version == FORMAT_VERSION and delta.metadata.package_version
    assert json.loads(delta.metadata.resolved_config) == {"stage2": {"steps": 300}}
    assert delta.tensors.keys() == tensors.keys()
    for name, t in tensors.items():
        got = delta.tensors[name]
        assert got.dtype == getattr(torch, storage)
        if storage == "float32":
            assert torch.equal(got, t)
        else:  # fp16 keeps 11 significant bits
            assert (got.float() - t).abs().max() <= 2.0**-11 * t.abs().max() + 1e-7
    for name, z in meta.latent.items():
        assert torch.equal(delta_latent(delta)[name], z) and delta_latent(delta)[name].dtype == torch.float32
    assert "latent.z_id" not in delta.tensors


def test_round_trip_through_fsspec_uri(tiny_backbone):
    cfg = DeltaConfig()
    tensors = adapter_state(_tuned(tiny_backbone, cfg), 0)
    n = save_delta("memory://deltas/a/p1.safetensors", tensors, _metadata(tiny_backbone, cfg))
    delta = load_delta("memory://deltas/a/p1.safetensors")
    assert delta.nbytes == n and delta.tensors.keys() == tensors.keys()


def test_rerender_from_delta_alone_matches_tuned_generator(tiny_backbone, tmp_path):
    cfg = DeltaConfig(storage_dtype="float32", include_mapping=True)
    tuned = _tuned(tiny_backbone, cfg)
    latent = _latent(tiny_backbone)
    save_delta(str(tmp_path / "d.safetensors"), adapter_state(tuned, 0), _metadata(tiny_backbone, cfg, latent))

    delta = load_delta(str(tmp_path / "d.safetensors"))
    fresh = load_backbone(delta.metadata.preset, seed=0)          # same base weights, rebuilt independently
    image = _render(apply_delta(fresh, delta), delta_latent(delta))
    torch.testing.assert_close(image, _render(tiny_backbone.with_tunable(tuned), latent))
    assert not torch.allclose(image, _render(tiny_backbone, latent)), "the delta must change the render"


def test_fp16_delta_renders_close_to_fp32(tiny_backbone, tmp_path):
    tuned = _tuned(tiny_backbone, DeltaConfig())
    latent = _latent(tiny_backbone)
    images = []
    for storage in ("float32", "float16"):
        cfg = DeltaConfig(storage_dtype=storage)
        path = str(tmp_path / f"{storage}.safetensors")
        save_delta(path, adapter_state(tuned, 0), _metadata(tiny_backbone, cfg, latent))
        images.append(_render(apply_delta(tiny_backbone, load_delta(path)), latent))
    assert (images[0] - images[1]).abs().max() < 5e-3


def test_apply_deltas_batches_paintings(tiny_backbone, tmp_path):
    cfg = DeltaConfig()
    deltas = []
    for k in range(3):
        path = str(tmp_path / f"{k}.safetensors")
        save_delta(path, adapter_state(_tuned(tiny_backbone, cfg, seed=k), 0),
                   _metadata(tiny_backbone, cfg, _latent(tiny_backbone, seed=k), seed=k))
        deltas.append(load_delta(path))
    batched = _render(apply_deltas(tiny_backbone, deltas), delta_latents(deltas))
    for k, d in enumerate(deltas):
        torch.testing.assert_close(batched[k:k + 1], _render(apply_delta(tiny_backbone, d), delta_latent(d)),
                                   atol=1e-5, rtol=1e-4)
    with pytest.raises(DeltaError, match="different settings"):
        other = Delta(deltas[0].tensors, DeltaMetadata(**{**deltas[0].metadata.__dict__, "config": DeltaConfig(rank=8)}))
        apply_deltas(tiny_backbone, [deltas[0], other])


def test_wrong_base_is_refused_naming_both_hashes(tiny_backbone, tmp_path):
    cfg = DeltaConfig()
    path = str(tmp_path / "d.safetensors")
    save_delta(path, adapter_state(_tuned(tiny_backbone, cfg), 0), _metadata(tiny_backbone, cfg))
    other = load_backbone("tiny", seed=1)
    with pytest.raises(DeltaError) as info:
        apply_delta(other, load_delta(path))
    message = str(info.value)
    assert tiny_backbone.base_hash()[:12] in message and other.base_hash()[:12] in message
    assert "stage 2" in message
    with pytest.raises(DeltaError):
        merge_delta(other, load_delta(path))


def test_wrong_preset_is_refused(tiny_backbone, tmp_path):
    cfg = DeltaConfig()
    path = str(tmp_path / "d.safetensors")
    save_delta(path, adapter_state(_tuned(tiny_backbone, cfg), 0), _metadata(tiny_backbone, cfg))
    with pytest.raises(DeltaError, match="preset 'tiny'.*'anifacegan'"):
        apply_delta(load_backbone("anifacegan"), load_delta(path))


def test_non_delta_files_are_refused(tiny_backbone, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a delta at all, just bytes")
    with pytest.raises(DeltaError, match="not a safetensors file"):
        load_delta(str(junk))
    checkpoint = tmp_path / "generator.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_backbone.tunable().state_dict().items()}, str(checkpoint))
    with pytest.raises(DeltaError, match="not an artmator delta"):
        load_delta(str(checkpoint))
    pickle_file = tmp_path / "generator.pth"
    torch.save(tiny_backbone.tunable().state_dict(), str(pickle_file))
    with pytest.raises(DeltaError, match="not a safetensors file"):
        load_delta(str(pickle_file))
    cfg = DeltaConfig()
    good = encode_delta(adapter_state(_tuned(tiny_backbone, cfg), 0), _metadata(tiny_backbone, cfg))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(DeltaError):
        load_delta(str(truncated))


def test_mismatched_adapter_tensors_are_refused(tiny_backbone):
    cfg = DeltaConfig(rank=4)
    tensors = adapter_state(_tuned(tiny_backbone, DeltaConfig(rank=8)), 0)   # made at rank 8, claims rank 4
    delta = Delta(tensors, _metadata(tiny_backbone, cfg))
    with pytest.raises(DeltaError, match="do not fit"):
        apply_delta(tiny_backbone, delta)
    with pytest.raises(DeltaError, match="non-adapter tensors"):
        encode_delta(tiny_backbone.tunable().state_dict(), _metadata(tiny_backbone, cfg))


def test_metadata_validation(tiny_backbone):
    with pytest.raises(ValueError, match="sha256"):
        DeltaMetadata("abc", "tiny", DeltaConfig(), _latent(tiny_backbone))
    with pytest.raises(ValueError, match="latent"):
        DeltaMetadata(tiny_backbone.base_hash(), "tiny", DeltaConfig(), {})
    with pytest.raises(ValueError, match="JSON object"):
        DeltaMetadata(tiny_backbone.base_hash(), "tiny", DeltaConfig(), _latent(tiny_backbone), resolved_config="[1]")


def test_merge_equals_adapted_render_and_loads_strictly(tiny_backbone, tmp_path):
    cfg = DeltaConfig(storage_dtype="float32", include_mapping=True)
    tuned = _tuned(tiny_backbone, cfg)
    latent = _latent(tiny_backbone)
    path = str(tmp_path / "d.safetensors")
    save_delta(path, adapter_state(tuned, 0), _metadata(tiny_backbone, cfg, latent))
    merged = merge_delta(tiny_backbone, load_delta(path))
    assert merged.keys() == tiny_backbone.tunable().state_dict().keys()
    fresh = build_parts(tiny_backbone.config)["generator"]
    fresh.load_state_dict(merged, strict=True)
    torch.testing.assert_close(_render(tiny_backbone.with_tunable(fresh), latent),
                               _render(tiny_backbone.with_tunable(tuned), latent), atol=1e-4, rtol=1e-4)


def test_full_mode_round_trip(tiny_backbone, tmp_path):
    cfg = DeltaConfig(mode="full", storage_dtype="float32")
    tuned = _tuned(tiny_backbone, cfg)
    latent = _latent(tiny_backbone)
    path = str(tmp_path / "full.safetensors")
    n = save_delta(path, adapter_state(tuned, 0), _metadata(tiny_backbone, cfg, latent))
    delta = load_delta(path)
    assert delta.metadata.mode == "full" and delta.nbytes == n
    assert delta.tensors.keys() == tiny_backbone.tunable().state_dict().keys()
    expected = _render(tiny_backbone.with_tunable(tuned), latent)
    torch.testing.assert_close(_render(apply_delta(tiny_backbone, delta), delta_latent(delta)), expected)
    fresh = build_parts(tiny_backbone.config)["generator"]
    fresh.load_state_dict(merge_delta(tiny_backbone, delta), strict=True)
    torch.testing.assert_close(_render(tiny_backbone.with_tunable(fresh), latent), expected)
    with pytest.raises(DeltaError, match="one painting each"):
        apply_deltas(tiny_backbone, [delta, delta])


@pytest.mark.parametrize("preset, rank, limit", [("anifacegan", 4, 0.01), ("anifacegan", 8, 0.015), ("tiny", 4, 0.1)])
def test_delta_footprint(preset, rank, limit):
    backbone = load_backbone(preset) if preset != "tiny" else load_backbone("tiny", seed=0)
    cfg = DeltaConfig(rank=rank)
    base_bytes = sum(t.numel() * t.element_size() for t in backbone.tunable().state_dict().values())
    n = len(encode_delta(adapter_state(attach_adapters(backbone.tunable(), cfg, 1, 0), 0), _metadata(backbone, cfg)))
    assert n / base_bytes < limit, f"{preset} rank {rank}: delta {n} B vs base {base_bytes} B"
