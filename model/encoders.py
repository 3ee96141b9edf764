"""Frozen image encoders used by the 3DArtmator losses: the CLIP image tower E and the LPIPS distance.

Both are built through their libraries' own constructors (`open_clip.create_model`, `lpips.LPIPS`) and never
download anything behind the user's back: pretrained weights come from a file/URI the user names, from the
local cache, or (CLIP only, when the hub is reachable) from open_clip's own download. When none of these is
possible the loaders fail at once with a `MissingWeightsError` that names the file and the option to pass.

Tests and demos use tiny seeded random models through the same constructors: `TINY_CLIP` (a small open_clip
architecture whose JSON config ships in `model/encoder_configs/`) and `LpipsConfig(random_backbone=True)`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import lpips
import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from artmator.model.fields import setting
from artmator.model.weights import WeightsError, load_strict, parse_state_dict, read_bytes

ENCODER_CONFIG_DIR = Path(__file__).parent / "encoder_configs"
TINY_CLIP_NAME = "artmator-tiny-clip"
HUB_PROBE_TIMEOUT_S = 3.0


class MissingWeightsError(WeightsError):
    """Pretrained weights that are neither given, nor cached, nor downloadable; the message says what to pass."""


# ----------------------------------------------------------------------------------------------------- CLIP


def register_model_configs() -> None:
    """Make the architectures in `model/encoder_configs/` (e.g. the tiny test CLIP) known to open_clip.

    Idempotent; called when a CLIP is built (not on import: importing this module changes no other library).
    """
    if TINY_CLIP_NAME not in open_clip.list_models():
        open_clip.add_model_config(ENCODER_CONFIG_DIR)


@dataclass(frozen=True)
class ClipConfig:
    """Which open_clip model serves as the image encoder E of the style-directional loss, and its weights.

    On a command line a CLIP is one spec (`from_spec`): 'MODEL', 'MODEL:TAG', 'MODEL=URI', 'MODEL:TAG=URI', or
    'tiny-random' for the untrained tiny encoder of tests and demos.
    """

    model_name: str = setting("ViT-B-32", "An open_clip architecture ('ViT-B-32', 'ViT-B-16', ... or the tiny "
                                          "test architecture).")
    pretrained: str | None = setting(
        "openai", "An open_clip pretrained tag ('openai', 'laion2b_s34b_b79k', ...), a local checkpoint path, or "
                  "none for a random initialisation (tests and demos only: random embeddings carry no style). A tag "
                  "is looked up in the local caches (Hugging Face hub cache, ~/.cache/clip) first and only "
                  "downloaded through open_clip when its host is reachable; offline and uncached it fails at once. "
                  "With checkpoint_uri set the tag is never downloaded: it only selects the tag's activation "
                  "variant (QuickGELU for 'openai') and its preprocessing mean/std.")
    checkpoint_uri: str | None = setting(
        None, "Local path or fsspec URI (s3://, gs://, https://, ...) of an open_clip state dict in .safetensors or "
              ".pth (read with weights_only=True), e.g. the open_clip_model.safetensors of the tag's Hugging Face "
              "repository. Full CLIP state dicts ('visual.*') and image-tower-only ones are accepted; the image "
              "tower loads strictly.")
    cache_dir: str | None = setting(
        None, "Download/cache directory handed to open_clip (none: its defaults, the HF hub cache for hub weights "
              "and ~/.cache/clip for URL weights).", result=False)

    @classmethod
    def from_spec(cls, spec: str) -> ClipConfig:
        """'tiny-random' | 'MODEL' | 'MODEL:TAG' | 'MODEL=URI' | 'MODEL:TAG=URI' -> ClipConfig (tag default openai)."""
        if spec == "tiny-random":
            return cls(model_name=TINY_CLIP_NAME, pretrained=None)
        spec, _, uri = spec.partition("=")
        model_name, _, tag = spec.partition(":")
        return cls(model_name=model_name, pretrained=tag or "openai", checkpoint_uri=uri or None)

    def to_spec(self) -> str:
        """The spec `from_spec` reads back into this config (cache_dir is not part of a spec)."""
        if self.pretrained is None and self.model_name == TINY_CLIP_NAME and not self.checkpoint_uri:
            return "tiny-random"
        if self.pretrained is None:
            raise ValueError(f"a random {self.model_name} CLIP has no command-line spec; use --config")
        return self.model_name + f":{self.pretrained}" + (f"={self.checkpoint_uri}" if self.checkpoint_uri else "")

    def __post_init__(self) -> None:
        if not self.model_name:
            raise ValueError("ClipConfig.model_name is empty; use an open_clip name such as 'ViT-B-32'.")
        if self.pretrained == "":
            raise ValueError("ClipConfig.pretrained is ''; use a tag such as 'openai', a file path, or None.")


TINY_CLIP = ClipConfig(model_name=TINY_CLIP_NAME, pretrained=None)


class ClipImageEncoder(nn.Module):
    """Frozen CLIP image tower: (B, 3, H, W) images in [-1, 1] -> (B, D) L2-normalised embeddings.

    Images are resized differentiably to the model's input size (shorter side, then centre crop) and
    normalised with the model's own mean/std, so gradients flow back to the input images (stage 2 needs
    them for G_trn). The text tower is not kept.
    """

    def __init__(self, visual: nn.Module, image_size: int, mean: Sequence[float], std: Sequence[float],
                 interpolation: str = "bicubic", name: str = "") -> None:
        super().__init__()
        self.visual = visual
        self.image_size = int(image_size)
        self.interpolation = interpolation
        self.name = name
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "ClipImageEncoder":
        # The encoder is frozen: it stays in eval mode whatever its parent module does.
        return super().train(False)

    @property
    def embed_dim(self) -> int:
        return int(self.visual.output_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images, "ClipImageEncoder input")
        x = (images.to(self.mean.dtype) + 1.0) / 2.0                        # (B, 3, H, W) in [0, 1]
        x = resize_center_crop(x, self.image_size, self.interpolation)       # (B, 3, S, S)
        x = (x - self.mean) / self.std
        return F.normalize(self.visual(x), dim=-1)                           # (B, D)


class ClipEnsemble(nn.Module):
    """Several CLIP image towers used together (e.g. ViT-B-32 + ViT-B-16, as StyleGAN-NADA does).

    `forward` returns one (B, D_k) embedding per encoder; `model.losses.clip_direction` then returns one
    direction per encoder and `directional_loss` averages the per-encoder losses.
    """

    def __init__(self, encoders: Sequence[ClipImageEncoder]) -> None:
        super().__init__()
        if not encoders:
            raise ValueError("ClipEnsemble needs at least one encoder.")
        self.encoders = nn.ModuleList(encoders)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(encoder(images) for encoder in self.encoders)


def resize_center_crop(x: torch.Tensor, size: int, mode: str = "bicubic") -> torch.Tensor:
    """Differentiable CLIP-style resize: shorter side to `size`, then centre crop to (size, size)."""
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
        mode = mode if mode in ("bilinear", "bicubic") else "bicubic"
        x = F.interpolate(x, size=(new_h, new_w), mode=mode, align_corners=False, antialias=True)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        x = x[..., top:top + size, left:left + size]
    return x


def load_clip(config: ClipConfig = ClipConfig(), device: str | torch.device = "cpu", seed: int = 0, *,
              storage_options: Mapping | None = None) -> ClipImageEncoder:
    """Build the frozen CLIP image encoder described by `config`.

    seed: seeds the random initialisation (what `pretrained=None` without `checkpoint_uri` returns), so a
    tiny test model is the same in every process. storage_options: fsspec options for `checkpoint_uri`.
    Raises MissingWeightsError (fast, no network retries) when a pretrained tag is neither cached nor
    downloadable, WeightsError when a checkpoint does not fit the architecture.
    """
    register_model_configs()
    tag_cfg = _pretrained_tag_config(config)
    weights_file = None
    if config.checkpoint_uri is None and config.pretrained is not None:
        weights_file = config.pretrained if not tag_cfg else _pretrained_weights_file(config, tag_cfg)
    model = _create_open_clip(config, tag_cfg, weights_file, seed)
    preprocess = open_clip.get_model_preprocess_cfg(model)
    visual = model.visual
    del model  # drop the text tower
    if config.checkpoint_uri is not None:
        state = parse_state_dict(read_bytes(config.checkpoint_uri, storage_options),
                                 part=f"CLIP image encoder ({config.model_name})", source=config.checkpoint_uri)
        load_strict(visual, image_tower_state(state), part=f"CLIP image encoder ({config.model_name})",
                    source=config.checkpoint_uri)
    size = preprocess.get("size", visual.image_size)
    size = size[0] if isinstance(size, (tuple, list)) else size
    encoder = ClipImageEncoder(visual, size, preprocess["mean"], preprocess["std"],
                               preprocess.get("interpolation", "bicubic"), name=config.model_name)
    return encoder.to(device)


def load_clips(configs: Sequence[ClipConfig], device: str | torch.device = "cpu", seed: int = 0, *,
               storage_options: Mapping | None = None) -> ClipEnsemble:
    """An ensemble of frozen CLIP image encoders; the i-th random initialisation uses `seed + i`."""
    return ClipEnsemble([load_clip(c, device, seed + i, storage_options=storage_options)
                         for i, c in enumerate(configs)])


def image_tower_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image-tower part of an open_clip state dict: strips "module." and selects "visual.*" if present."""
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    if any(k.startswith("visual.") for k in state):
        return {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    return dict(state)


def _create_open_clip(config: ClipConfig, tag_cfg: Mapping, weights_file: str | None, seed: int) -> nn.Module:
    preprocess = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
    with torch.random.fork_rng(devices=[]), _quiet_random_init_warning():
        torch.manual_seed(seed)
        return open_clip.create_model(
            config.model_name, pretrained=weights_file, force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
            force_preprocess_cfg=preprocess or None, pretrained_text=False, cache_dir=config.cache_dir,
            require_pretrained=weights_file is not None,
        )


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init_warning():
    """open_clip logs 'initialized randomly' even when `checkpoint_uri` is loaded right after; drop that line."""
    flt = _DropRandomInitWarning()
    logging.getLogger().addFilter(flt)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(flt)


def _pretrained_tag_config(config: ClipConfig) -> dict:
    """open_clip's metadata for `config.pretrained` when it is a tag; {} for None or a file path."""
    if config.pretrained is None or os.path.isfile(config.pretrained):
        return {}
    name = config.model_name.replace("/", "-")
    if name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model '{config.model_name}'; known: {open_clip.list_models()}")
    tag_cfg = open_clip.get_pretrained_cfg(name, config.pretrained)
    if not tag_cfg:
        raise ValueError(
            f"'{config.pretrained}' is neither an open_clip pretrained tag of {name} nor an existing file; "
            f"tags of {name}: {open_clip.list_pretrained_tags_by_model(name)}."
        )
    return dict(tag_cfg)


def _pretrained_weights_file(config: ClipConfig, tag_cfg: Mapping) -> str:
    """Local file of a pretrained tag: from the caches, else downloaded by open_clip if its host is reachable."""
    cached = cached_pretrained_file(tag_cfg, config.cache_dir)
    if cached is not None:
        return cached
    host = _weights_host(tag_cfg)
    if hub_offline() or not host_reachable(host):
        raise MissingWeightsError(_missing_clip_message(config, tag_cfg, f"{host} cannot be reached"))
    try:
        return open_clip.download_pretrained(dict(tag_cfg), cache_dir=config.cache_dir)
    except Exception as exc:  # noqa: BLE001 - any download failure gets the same actionable message
        raise MissingWeightsError(_missing_clip_message(config, tag_cfg, f"download failed: {exc}")) from exc


def cached_pretrained_file(tag_cfg: Mapping, cache_dir: str | None = None) -> str | None:
    """Path of an already-downloaded open_clip weight file for a tag, or None. Never touches the network."""
    hub = tag_cfg["hf_hub"] if _uses_hub(tag_cfg) else ""
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(hub)
        for name in _hub_filenames(filename):
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str) and os.path.isfile(found):
                return found
    url = "" if hub else tag_cfg.get("url", "")  # open_clip prefers the hub when a tag has both
    if url:
        target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(target):
            return target
    return None


def _hub_filenames(filename: str) -> list[str]:
    if not filename:
        return [open_clip.constants.HF_SAFE_WEIGHTS_NAME, open_clip.constants.HF_WEIGHTS_NAME]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


def _uses_hub(tag_cfg: Mapping) -> bool:
    """Whether open_clip fetches this tag from the Hugging Face hub (it prefers the hub when installed)."""
    return bool(tag_cfg.get("hf_hub")) and open_clip.pretrained.has_hf_hub()


def _weights_host(tag_cfg: Mapping) -> str:
    if _uses_hub(tag_cfg):
        return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    return urlparse(tag_cfg.get("url", "")).hostname or ""


def hub_offline() -> bool:
    """True when the user asked Hugging Face libraries to stay offline (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def host_reachable(host: str, port: int = 443, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """One TCP connection attempt (DNS included) bounded by `timeout_s`; True if a proxy is configured."""
    if not host:
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(result and result[0])


def _missing_clip_message(config: ClipConfig, tag_cfg: Mapping, why: str) -> str:
    sources = []
    if _uses_hub(tag_cfg):
        repo_id, filename = os.path.split(tag_cfg["hf_hub"])
        sources.append(f"Hugging Face repo {repo_id}, file {' or '.join(_hub_filenames(filename))}")
    elif tag_cfg.get("url"):
        sources.append(f"URL {tag_cfg['url']} (cached as ~/.cache/clip/{os.path.basename(tag_cfg['url'])})")
    cache = f"cache_dir={config.cache_dir!r}" if config.cache_dir else "the default Hugging Face hub cache"
    return (
        f"CLIP weights for open_clip model '{config.model_name}' with pretrained='{config.pretrained}' are not "
        f"in the local cache and cannot be downloaded ({why}). The weights are: {'; '.join(sources)}. "
        f"Either fetch them into {cache} on a connected machine (python -c \"import open_clip; "
        f"open_clip.create_model('{config.model_name}', pretrained='{config.pretrained}')\") and copy the cache "
        f"here, or pass ClipConfig(model_name='{config.model_name}', pretrained='{config.pretrained}', "
        f"checkpoint_uri='<local path or s3://... of that file>')."
    )


# ---------------------------------------------------------------------------------------------------- LPIPS

_TORCHVISION_WEIGHTS = {"vgg": "VGG16_Weights", "alex": "AlexNet_Weights"}


@dataclass(frozen=True)
class LpipsConfig:
    """The LPIPS perceptual distance used by L_cr (stage 1) and L_spa (stage 2).

    On a command line LPIPS is one spec (`from_spec`): 'NET', 'NET=URI', or 'tiny-random' (alex, random backbone).
    """

    net: str = setting("vgg", "'vgg' (the usual choice for optimisation losses) or 'alex'.")
    backbone_weights_uri: str | None = setting(
        None, "Local path or fsspec URI of the torchvision ImageNet state dict of the backbone "
              "(vgg16-397923af.pth / alexnet-owt-7be5be79.pth, or a safetensors conversion). Its 'features.*' "
              "tensors load strictly; classifier tensors, unused by LPIPS, are ignored. None: look in the torch "
              "hub cache (torch.hub.get_dir()/checkpoints/) and fail fast if the file is not there.")
    random_backbone: bool = setting(False, "Keep the backbone randomly initialised (tests and demos only: the "
                                           "distances are then not perceptual). The calibrated linear heads "
                                           "always come from the lpips package.")

    @classmethod
    def from_spec(cls, spec: str) -> LpipsConfig:
        """'tiny-random' | 'vgg' | 'alex' | 'NET=URI' -> LpipsConfig."""
        if spec == "tiny-random":
            return cls(net="alex", random_backbone=True)
        net, _, uri = spec.partition("=")
        return cls(net=net, backbone_weights_uri=uri or None)

    def to_spec(self) -> str:
        """The spec `from_spec` reads back into this config."""
        if self.random_backbone:
            if self.net != "alex":
                raise ValueError(f"a random-backbone {self.net} LPIPS has no command-line spec; use --config")
            return "tiny-random"
        return self.net + (f"={self.backbone_weights_uri}" if self.backbone_weights_uri else "")

    def __post_init__(self) -> None:
        if self.net not in _TORCHVISION_WEIGHTS:
            raise ValueError(f"LpipsConfig.net must be one of {sorted(_TORCHVISION_WEIGHTS)}, got {self.net!r}.")
        if self.random_backbone and self.backbone_weights_uri is not None:
            raise ValueError("LpipsConfig: random_backbone=True and backbone_weights_uri are exclusive.")


class LpipsDistance(nn.Module):
    """Frozen LPIPS: `lpips(x, y)` with x, y (B, 3, H, W) in [-1, 1] -> (B,) perceptual distances."""

    def __init__(self, metric: lpips.LPIPS) -> None:
        super().__init__()
        self.metric = metric
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LpipsDistance":
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_images(x, "LPIPS first input")
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}.")
        return self.metric(x, y).reshape(x.shape[0])                         # (B,)


def load_lpips(config: LpipsConfig = LpipsConfig(), device: str | torch.device = "cpu", seed: int = 0, *,
               storage_options: Mapping | None = None) -> LpipsDistance:
    """Build the frozen LPIPS distance. Never downloads: the backbone comes from a URI, the hub cache, or seed.

    Raises MissingWeightsError when no backbone weights are given or cached (unless random_backbone),
    WeightsError when the file does not fit the backbone.
    """
    uri = None if config.random_backbone else _lpips_backbone_uri(config)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # lpips calls torchvision's deprecated `pretrained=` argument; nothing is downloaded with pnet_rand=True.
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        torch.manual_seed(seed)
        metric = lpips.LPIPS(net=config.net, pretrained=True, pnet_rand=True, verbose=False)
    if uri is not None:
        part = f"LPIPS {config.net} backbone"
        state = parse_state_dict(read_bytes(uri, storage_options), part=part, source=uri)
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        load_strict(torchvision_features_view(metric.net), state, part=part, source=uri)
    return LpipsDistance(metric).to(device)


def torchvision_features_view(net: nn.Module) -> nn.Module:
    """A module whose `features` is the LPIPS backbone's layers in torchvision order (shared, not copied).

    lpips splits torchvision's `features` into `slice1..sliceN` keeping the original layer indices as child
    names, so `features.<i>.weight` of a torchvision state dict maps to the child named <i>.
    """
    layers = {int(name): layer for s in net.children() if isinstance(s, nn.Sequential)
              for name, layer in s.named_children()}
    view = nn.Module()
    view.features = nn.Sequential(OrderedDict((str(i), layers[i]) for i in sorted(layers)))
    return view


def torchvision_weights_filename(net: str) -> str:
    """The torchvision ImageNet weight file LPIPS expects for `net`, e.g. "vgg16-397923af.pth"."""
    import torchvision.models as tvm

    return os.path.basename(getattr(tvm, _TORCHVISION_WEIGHTS[net]).IMAGENET1K_V1.url)


def _lpips_backbone_uri(config: LpipsConfig) -> str:
    if config.backbone_weights_uri is not None:
        return config.backbone_weights_uri
    filename = torchvision_weights_filename(config.net)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return str(cached)
    raise MissingWeightsError(
        f"LPIPS needs the torchvision ImageNet weights of its {config.net} backbone, {filename}, and they are not "
        f"in the torch hub cache ({cached}). Pass LpipsConfig(backbone_weights_uri='<path or s3://.../{filename}>') "
        f"or copy the file to {cached} (it is downloadable from "
        f"https://download.pytorch.org/models/{filename}). random_backbone=True is for tests only."
    )


def _check_images(x: torch.Tensor, what: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{what} must be (B, 3, H, W) images in [-1, 1], got shape {tuple(x.shape)}.")
