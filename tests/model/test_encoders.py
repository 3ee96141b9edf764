"""Frozen CLIP and LPIPS encoders built through open_clip / lpips offline (model.encoders)."""
from __future__ import annotations

import time

import open_clip
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from artmator.model import encoders
from artmator.model.encoders import (
    TINY_CLIP,
    TINY_CLIP_NAME,
    ClipConfig,
    ClipEnsemble,
    ClipImageEncoder,
    LpipsConfig,
    MissingWeightsError,
    cached_pretrained_file,
    host_reachable,
    load_clip,
    load_clips,
    load_lpips,
    torchvision_features_view,
)
from artmator.model.weights import WeightsError


def _images(b: int = 2, h: int = 64, w: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def tiny_clip() -> ClipImageEncoder:
    return load_clip(TINY_CLIP, seed=0)


@pytest.fixture(scope="module")
def tiny_lpips():
    return load_lpips(LpipsConfig(net="alex", random_backbone=True), seed=0)


@pytest.fixture()
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(open_clip, "download_pretrained", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


# ------------------------------------------------------------------------------------------------- CLIP


def test_tiny_clip_is_registered_with_open_clip_and_builds_through_it(tiny_clip):
    assert TINY_CLIP_NAME in open_clip.list_models()
    reference = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    assert tiny_clip.embed_dim == 64 and tiny_clip.image_size == 64
    # Only the image tower is kept.
    assert sum(p.numel() for p in tiny_clip.parameters()) == sum(p.numel() for p in reference.visual.parameters())
    assert sum(p.numel() for p in reference.visual.parameters()) < sum(p.numel() for p in reference.parameters())


def test_tiny_clip_outputs_unit_norm_embeddings(tiny_clip):
    out = tiny_clip(_images(b=3, h=80, w=96))
    assert out.shape == (3, 64)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))


def test_tiny_clip_matches_open_clip_encode_image(tiny_clip):
    # Same weights, same preprocessing: [-1, 1] -> [0, 1] -> model mean/std -> visual tower -> normalise.
    model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    model.visual.load_state_dict(tiny_clip.visual.state_dict())
    x = _images()
    mean = torch.tensor(model.visual.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.image_std).view(1, 3, 1, 1)
    expected = model.eval().encode_image(((x + 1) / 2 - mean) / std, normalize=True)
    torch.testing.assert_close(tiny_clip(x), expected, atol=1e-5, rtol=1e-5)


def test_tiny_clip_is_deterministic_given_the_seed():
    x = _images()
    first, again, other = load_clip(TINY_CLIP, seed=0), load_clip(TINY_CLIP, seed=0), load_clip(TINY_CLIP, seed=1)
    assert torch.equal(first(x), again(x))
    assert not torch.allclose(first(x), other(x))


def test_tiny_clip_is_frozen_but_passes_gradients_to_images(tiny_clip):
    assert not any(p.requires_grad for p in tiny_clip.parameters())
    tiny_clip.train()
    assert not tiny_clip.training and not tiny_clip.visual.training
    x = _images().requires_grad_(True)
    tiny_clip(x)[:, 0].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_clip.parameters())


def test_clip_refuses_non_image_input(tiny_clip):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tiny_clip(torch.zeros(2, 1, 64, 64))


def test_ensemble_returns_one_embedding_per_encoder_with_distinct_seeds():
    ensemble = load_clips([TINY_CLIP, TINY_CLIP], seed=0)
    assert isinstance(ensemble, ClipEnsemble)
    out = ensemble(_images())
    assert len(out) == 2 and all(o.shape == (2, 64) for o in out)
    assert not torch.allclose(out[0], out[1])
    torch.testing.assert_close(out[1], load_clip(TINY_CLIP, seed=1)(_images()))


@pytest.mark.timeout(60)
def test_openai_weights_offline_fail_fast_and_name_the_file(monkeypatch, tmp_path, no_download):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(MissingWeightsError) as err:
        load_clip(ClipConfig(cache_dir=str(tmp_path)))
    assert time.monotonic() - start < 5
    message = str(err.value)
    for needle in ("ViT-B-32", "openai", "timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors",
                   "checkpoint_uri"):
        assert needle in message


@pytest.mark.timeout(60)
def test_unreachable_hub_fails_fast_without_offline_env(monkeypatch, tmp_path, no_download):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    probed = []
    monkeypatch.setattr(encoders, "host_reachable", lambda host: probed.append(host) or False)
    start = time.monotonic()
    with pytest.raises(MissingWeightsError, match="huggingface.co cannot be reached"):
        load_clip(ClipConfig(model_name="ViT-B-16", cache_dir=str(tmp_path)))
    assert time.monotonic() - start < 5 and probed == ["huggingface.co"]


@pytest.mark.timeout(30)
def test_host_probe_is_bounded(monkeypatch):
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    start = time.monotonic()
    assert host_reachable("artmator-weights.invalid", timeout_s=2.0) is False
    assert host_reachable("") is False
    assert time.monotonic() - start < 5


def test_cached_hub_weights_are_found_without_network(tmp_path):
    repo = tmp_path / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    cfg = open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    assert cached_pretrained_file(cfg, str(tmp_path)) == str(snapshot / "open_clip_model.safetensors")
    assert cached_pretrained_file(cfg, str(tmp_path / "empty")) is None


def test_unknown_tag_or_model_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="laion2b_s34b_b79k"):
        load_clip(ClipConfig(pretrained="no-such-tag"))
    with pytest.raises(ValueError, match="unknown open_clip model"):
        load_clip(ClipConfig(model_name="ViT-Nope", pretrained="openai"))
    with pytest.raises(ValueError, match="empty"):
        ClipConfig(model_name="")


@pytest.mark.timeout(180)
def test_vit_b32_checkpoint_loads_through_checkpoint_uri(tmp_path, no_download):
    torch.manual_seed(123)
    source = open_clip.create_model("ViT-B-32", pretrained=None).visual.eval()
    path = tmp_path / "vit_b32.safetensors"
    save_file({f"visual.{k}": v.contiguous() for k, v in source.state_dict().items()}, str(path))
    # With the "openai" tag the architecture variant (QuickGELU) and mean/std come from the tag; no download.
    encoder = load_clip(ClipConfig(pretrained="openai", checkpoint_uri=str(path)), seed=0)
    assert type(encoder.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    loaded = encoder.visual.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())
    assert encoder.embed_dim == 512 and encoder.image_size == 224
    torch.testing.assert_close(encoder.mean.flatten(), torch.tensor([0.48145466, 0.4578275, 0.40821073]))


def test_wrapped_pth_checkpoint_loads_and_a_wrong_one_is_refused(tmp_path, tiny_clip):
    state = {f"module.visual.{k}": v.clone() for k, v in load_clip(TINY_CLIP, seed=5).visual.state_dict().items()}
    good = tmp_path / "tiny.pth"
    torch.save({"state_dict": state, "epoch": 3}, good)
    encoder = load_clip(ClipConfig(TINY_CLIP_NAME, pretrained=None, checkpoint_uri=str(good)), seed=0)
    torch.testing.assert_close(encoder(_images()), load_clip(TINY_CLIP, seed=5)(_images()))

    key = "module.visual.conv1.weight"
    state[key] = torch.zeros(3, 3, 3, 3)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad))
    with pytest.raises(WeightsError, match=r"conv1\.weight: file has \(3, 3, 3, 3\)"):
        load_clip(ClipConfig(TINY_CLIP_NAME, pretrained=None, checkpoint_uri=str(bad)))


# ------------------------------------------------------------------------------------------------ LPIPS


@pytest.mark.parametrize(("net", "filename"), [("vgg", "vgg16-397923af.pth"), ("alex", "alexnet-owt-7be5be79.pth")])
def test_lpips_without_backbone_weights_fails_fast_naming_the_file(monkeypatch, tmp_path, net, filename, no_download):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    start = time.monotonic()
    with pytest.raises(MissingWeightsError) as err:
        load_lpips(LpipsConfig(net=net))
    assert time.monotonic() - start < 1
    assert filename in str(err.value) and "backbone_weights_uri" in str(err.value)


def _torchvision_state(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The `features.*` part of a random torchvision alexnet / vgg16 state dict (what LPIPS uses)."""
    torch.manual_seed(seed)
    if net == "alex":
        features = torchvision.models.alexnet(weights=None).features
    else:  # torchvision's own VGG-16 feature builder, without allocating the 120 M-parameter classifier
        features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    return {f"features.{k}": v for k, v in features.state_dict().items()}


def _assert_backbone_equals(metric, state):
    view = torchvision_features_view(metric.metric.net).state_dict()
    assert set(view) == {k for k in state if k.startswith("features.")}
    assert all(torch.equal(view[k], state[k]) for k in view)


def test_lpips_alex_loads_a_torchvision_file_strictly(monkeypatch, tmp_path, no_download):
    state = _torchvision_state("alex", seed=3)
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    # A torchvision file also holds the classifier, which LPIPS does not use: it is ignored.
    torch.save({**state, "classifier.1.weight": torch.zeros(8, 4), "classifier.1.bias": torch.zeros(8)}, path)
    metric = load_lpips(LpipsConfig(net="alex", backbone_weights_uri=str(path)))
    _assert_backbone_equals(metric, state)
    # The same file found in the torch hub cache.
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    path.rename(tmp_path / "hub" / "checkpoints" / path.name)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    _assert_backbone_equals(load_lpips(LpipsConfig(net="alex")), state)


@pytest.mark.timeout(120)
def test_lpips_vgg_loads_a_torchvision_features_file(tmp_path):
    state = _torchvision_state("vgg", seed=4)
    path = tmp_path / "vgg16.safetensors"
    save_file(state, str(path))
    _assert_backbone_equals(load_lpips(LpipsConfig(net="vgg", backbone_weights_uri=str(path))), state)


def test_lpips_refuses_a_wrong_backbone_file(tmp_path):
    state = _torchvision_state("alex")
    state["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    expected = r"features\.0\.weight: file has \(64, 3, 5, 5\), model expects \(64, 3, 11, 11\)"
    with pytest.raises(WeightsError, match=expected):
        load_lpips(LpipsConfig(net="alex", backbone_weights_uri=str(path)))
    state = _torchvision_state("alex")
    state["features.99.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"unexpected keys \[features\.99\.weight\]"):
        load_lpips(LpipsConfig(net="alex", backbone_weights_uri=str(path)))


def test_tiny_lpips_is_symmetric_zero_at_equality_and_per_sample(tiny_lpips):
    x, y = _images(b=3), _images(b=3, seed=1)
    d = tiny_lpips(x, y)
    assert d.shape == (3,) and (d > 0).all()
    torch.testing.assert_close(d, tiny_lpips(y, x))
    torch.testing.assert_close(tiny_lpips(x, x), torch.zeros(3))
    y2 = y.clone()
    y2[1:] = _images(b=2, seed=9)
    assert tiny_lpips(x, y2)[0] == d[0]


def test_tiny_lpips_is_frozen_deterministic_and_passes_gradients(tiny_lpips):
    assert not any(p.requires_grad for p in tiny_lpips.parameters())
    tiny_lpips.train()
    assert not tiny_lpips.training
    x, y = _images().requires_grad_(True), _images(seed=1)
    tiny_lpips(x, y).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    again = load_lpips(LpipsConfig(net="alex", random_backbone=True), seed=0)
    other = load_lpips(LpipsConfig(net="alex", random_backbone=True), seed=1)
    torch.testing.assert_close(again(x, y), tiny_lpips(x, y))
    assert not torch.allclose(other(x, y), tiny_lpips(x, y))


def test_lpips_config_validation():
    with pytest.raises(ValueError, match="squeeze"):
        LpipsConfig(net="squeeze")
    with pytest.raises(ValueError, match="exclusive"):
        LpipsConfig(random_backbone=True, backbone_weights_uri="x.pth")
    with pytest.raises(ValueError, match="same shape"):
        load_lpips(LpipsConfig(net="alex", random_backbone=True))(_images(), _images(h=32))
