"""Per-painting deltas: one painting's stage-2 result as a small safetensors file bound to its base generator.

A delta file holds
  * the painting's weight update: LoRA tensors `<layer>.lora_A` (r, in) / `<layer>.lora_B` (out, r) named
    relative to the generator (mode "lora"), or the whole tuned generator state dict (mode "full");
  * the painting's inverted latent z* as tensors `latent.<name>` (1, D), float32 (e.g. `latent.z_id`);
  * string metadata: format tag and version, the base generator's sha256 (`Backbone.base_hash()`), preset,
    mode/rank/alpha and the full `DeltaConfig` (JSON), the painting's pose, seed, the run's resolved config
    (JSON string, opaque here) and the artmator version that wrote it.

Re-rendering from a delta alone:

    delta = load_delta(path)
    backbone = apply_delta(load_backbone(delta.metadata.preset, weights), delta)
    backbone.render_latent(delta_latent(delta), yaw_deg, pitch_deg, resolution)

`apply_deltas` does the same for K deltas at once (adapter k serves batch element k; latents from
`delta_latents`). `merge_delta` exports plain generator weights with the update folded in.
"""
from __future__ import annotations

import importlib.metadata
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import fsspec
import torch
from torch import nn
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from artmator.model.backbone import Backbone, Latent
from artmator.model.lora import (BatchedLoRALinear, DeltaConfig, adapter_state, attach_adapters, load_adapter, lora_layers,
                        merged_state_dict)
from artmator.model.weights import WeightsError, load_strict, looks_like_safetensors, read_bytes

FORMAT = "artmator.delta"
FORMAT_VERSION = 1
LATENT_PREFIX = "latent."
_REQUIRED_KEYS = ("format", "format_version", "base_sha256", "preset", "mode", "rank", "alpha", "delta_config",
                  "yaw_deg", "pitch_deg", "seed", "resolved_config", "package_version")


class DeltaError(WeightsError):
    """A delta that cannot be read or does not belong to the backbone it is applied to; says what to do."""


def package_version() -> str:
    """The installed artmator version, or "0+unknown" when run from an uninstalled tree."""
    try:
        return importlib.metadata.version("artmator")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass
class DeltaMetadata:
    """What a delta is bound to and how it was made. `latent` is stored as tensors, the rest as strings.

    mode, rank and alpha are read from `config`. `latent` (name -> (1, D) tensor) is excluded from `==`.
    """

    base_sha256: str                      # Backbone.base_hash() of the generator the delta was tuned from
    preset: str                           # backbone preset name, e.g. "anifacegan"
    config: DeltaConfig                   # how the update is parameterised and stored
    latent: Latent = field(compare=False)  # the painting's inverted z*: name -> (1, D)
    yaw_deg: float = 0.0                  # the painting's estimated pose (degrees, 0 = frontal)
    pitch_deg: float = 0.0
    seed: int = 0                         # seed of the painting's adapter initialisation (and of its run)
    resolved_config: str = "{}"           # JSON object: the stage run's resolved settings, stored verbatim
    package_version: str = field(default_factory=package_version)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.base_sha256, str) or len(self.base_sha256) != 64:
            raise ValueError(f"base_sha256 must be a 64-character sha256 hex digest (Backbone.base_hash()), "
                             f"got {self.base_sha256!r}")
        if not self.latent:
            raise ValueError("a delta needs the painting's latent z* (name -> (1, D) tensor); got none")
        for name, t in self.latent.items():
            if not isinstance(t, torch.Tensor) or t.dim() not in (1, 2) or (t.dim() == 2 and t.shape[0] != 1):
                raise ValueError(f"latent {name!r} must be one painting's code, shape (D,) or (1, D); "
                                 f"got {getattr(t, 'shape', type(t).__name__)}")
        for name in ("yaw_deg", "pitch_deg"):
            if not math.isfinite(float(getattr(self, name))):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        try:
            parsed = json.loads(self.resolved_config)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"resolved_config must be a JSON object string ({exc})") from exc
        if not isinstance(parsed, dict):
            raise ValueError(f"resolved_config must be a JSON object, got {self.resolved_config[:80]!r}")

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def rank(self) -> int:
        return self.config.rank

    @property
    def alpha(self) -> float:
        return self.config.alpha

    def to_strings(self) -> dict[str, str]:
        """The safetensors string metadata (everything but the latent)."""
        return {
            "format": FORMAT, "format_version": str(self.format_version), "base_sha256": self.base_sha256,
            "preset": self.preset, "mode": self.mode, "rank": str(self.rank), "alpha": repr(float(self.alpha)),
            "delta_config": self.config.to_json(), "yaw_deg": repr(float(self.yaw_deg)),
            "pitch_deg": repr(float(self.pitch_deg)), "seed": str(int(self.seed)),
            "resolved_config": self.resolved_config, "package_version": self.package_version,
        }


@dataclass(frozen=True)
class Delta:
    """One painting's delta as read from a file: update tensors (stored dtype, CPU) and metadata."""

    tensors: dict[str, torch.Tensor]   # `<layer>.lora_A/B` (lora) or generator state dict (full); no latents
    metadata: DeltaMetadata
    nbytes: int = 0                    # size of the file it was read from (0 if built in memory)


# ---- writing and reading -----------------------------------------------------------------------------------
def encode_delta(tensors: Mapping[str, torch.Tensor], metadata: DeltaMetadata) -> bytes:
    """The delta file's bytes: update tensors in the storage dtype, latents float32, string metadata."""
    out: dict[str, torch.Tensor] = {}
    dtype = metadata.config.torch_storage_dtype
    for name, t in tensors.items():
        if name.startswith(LATENT_PREFIX):
            raise ValueError(f"tensor name {name!r} is reserved for latents; pass latents via DeltaMetadata.latent")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"delta tensor {name!r} is a {type(t).__name__}, not a tensor")
        t = t.detach().to("cpu")
        if t.is_floating_point() and dtype == torch.float16 and t.abs().max() > torch.finfo(torch.float16).max:
            raise ValueError(f"delta tensor {name!r} exceeds the float16 range (max |x| = {t.abs().max():.3g}); "
                             "save it with DeltaConfig(storage_dtype='float32').")
        out[name] = (t.to(dtype) if t.is_floating_point() else t).contiguous()
    _check_update_names(out, metadata.config, source="the tensors to save")
    for name, t in metadata.latent.items():
        out[LATENT_PREFIX + name] = t.detach().to("cpu", torch.float32).reshape(1, -1).contiguous()
    return save_safetensors_bytes(out, metadata=metadata.to_strings())


def save_delta(uri_or_path: str, tensors: Mapping[str, torch.Tensor], metadata: DeltaMetadata, *,
               storage_options: Mapping | None = None) -> int:
    """Write one painting's delta (local path or fsspec URI) and return its size in bytes."""
    data = encode_delta(tensors, metadata)
    fs, path = fsspec.core.url_to_fs(str(uri_or_path), **dict(storage_options or {}))
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(path, "wb") as f:
        f.write(data)
    return len(data)


def load_delta(uri_or_path: str, storage_options: Mapping | None = None) -> Delta:
    """Read a delta written by `save_delta`; refuses anything else with a `DeltaError` naming the file."""
    source = str(uri_or_path)
    return decode_delta(read_bytes(source, storage_options), source=source)


def decode_delta(data: bytes, *, source: str = "<bytes>") -> Delta:
    if not looks_like_safetensors(data):
        raise DeltaError(f"{source} is not an artmator delta: it is not a safetensors file "
                         f"({len(data)} bytes). Pass a file written by save_delta / stage 2.")
    header_len = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8:8 + header_len])
        tensors = dict(load_safetensors_bytes(data))
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise DeltaError(f"{source} is a damaged safetensors file ({type(exc).__name__}: {exc}); "
                         "re-run stage 2 for this painting or restore the file.") from exc
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise DeltaError(f"{source} is a safetensors file but not an artmator delta (metadata 'format' is "
                         f"{meta.get('format')!r}, expected {FORMAT!r}); generator checkpoints are loaded with "
                         "load_backbone(weights=...), deltas with load_delta.")
    metadata = _parse_metadata(meta, tensors, source)
    update = {n: t for n, t in tensors.items() if not n.startswith(LATENT_PREFIX)}
    _check_update_names(update, metadata.config, source=source)
    return Delta(tensors=update, metadata=metadata, nbytes=len(data))


def _parse_metadata(meta: Mapping[str, str], tensors: Mapping[str, torch.Tensor], source: str) -> DeltaMetadata:
    missing = [k for k in _REQUIRED_KEYS if k not in meta]
    if missing:
        raise DeltaError(f"{source}: delta metadata lacks {missing}; the file is incomplete or hand-edited.")
    try:
        version = int(meta["format_version"])
        if version > FORMAT_VERSION:
            raise DeltaError(f"{source} uses delta format {version}, written by artmator {meta['package_version']}; "
                             f"this artmator ({package_version()}) reads format <= {FORMAT_VERSION}. Upgrade artmator.")
        config = DeltaConfig.from_json(meta["delta_config"])
        if (meta["mode"], int(meta["rank"]), float(meta["alpha"])) != (config.mode, config.rank, float(config.alpha)):
            raise DeltaError(f"{source}: mode/rank/alpha metadata disagree with its delta_config; "
                             "the file was edited.")
        latent = {n[len(LATENT_PREFIX):]: t.to(torch.float32)
                  for n, t in tensors.items() if n.startswith(LATENT_PREFIX)}
        return DeltaMetadata(
            base_sha256=meta["base_sha256"], preset=meta["preset"], config=config, latent=latent,
            yaw_deg=float(meta["yaw_deg"]), pitch_deg=float(meta["pitch_deg"]), seed=int(meta["seed"]),
            resolved_config=meta["resolved_config"], package_version=meta["package_version"], format_version=version,
        )
    except DeltaError:
        raise
    except (ValueError, TypeError) as exc:
        raise DeltaError(f"{source}: invalid delta metadata ({exc}).") from exc


def _check_update_names(tensors: Mapping[str, torch.Tensor], config: DeltaConfig, *, source: str) -> None:
    if not tensors:
        raise DeltaError(f"{source}: no update tensors; a delta holds adapter (lora) or generator (full) weights.")
    lora_names = [n for n in tensors if n.endswith((".lora_A", ".lora_B"))]
    if config.mode == "lora" and len(lora_names) != len(tensors):
        odd = sorted(set(tensors) - set(lora_names))[:4]
        raise DeltaError(f"{source}: mode 'lora' but found non-adapter tensors {odd}; "
                         "use adapter_state(module, k) to extract a painting's delta.")
    if config.mode == "full" and lora_names:
        raise DeltaError(f"{source}: mode 'full' but found adapter tensors {lora_names[:4]}; "
                         "save LoRA deltas with DeltaConfig(mode='lora').")


# ---- using a delta -----------------------------------------------------------------------------------------
def check_delta_fits(backbone: Backbone, delta: Delta) -> None:
    """Refuse a delta tuned from another preset or other base weights (it would render garbage)."""
    meta = delta.metadata
    if meta.preset != backbone.preset:
        raise DeltaError(f"delta was tuned on preset {meta.preset!r} but the backbone is {backbone.preset!r}; "
                         f"load the backbone with load_backbone({meta.preset!r}, weights) before applying it.")
    base = backbone.base_hash()
    if meta.base_sha256 != base:
        raise DeltaError(
            f"delta was tuned from generator {meta.base_sha256[:12]} but this backbone's generator is {base[:12]} "
            f"(preset {backbone.preset!r}); load the same generator weights the delta was made with "
            "(see the run's resolved_config), or re-run stage 2 for this painting on these weights.")


def apply_delta(backbone: Backbone, delta: Delta) -> Backbone:
    """`backbone` with the painting's update: shares the fixed parts and the frozen base weights."""
    return apply_deltas(backbone, [delta])


def apply_deltas(backbone: Backbone, deltas: Sequence[Delta]) -> Backbone:
    """One backbone serving K paintings: adapter k serves batch element k (render with `delta_latents`).

    All deltas must share one DeltaConfig structure (mode, rank, alpha, include_mapping); full-mode deltas are
    one painting per generator, so K must be 1. The returned generator is frozen (inference).
    """
    if not deltas:
        raise ValueError("apply_deltas needs at least one delta")
    for d in deltas:
        check_delta_fits(backbone, d)
    config = deltas[0].metadata.config
    for d in deltas[1:]:
        if _structure(d.metadata.config) != _structure(config):
            raise DeltaError(f"cannot batch deltas with different settings: {d.metadata.config} vs {config}; "
                             "apply them in separate batches.")
    if config.mode == "full" and len(deltas) != 1:
        raise DeltaError(f"full-mode deltas are whole generators, one painting each; got {len(deltas)} at once. "
                         "Apply them one at a time.")
    module = attach_adapters(backbone.tunable(), config, len(deltas), [d.metadata.seed for d in deltas])
    for k, d in enumerate(deltas):
        if config.mode == "full":
            load_strict(module, d.tensors, part="generator", source="full-mode delta")
        else:
            try:
                load_adapter(module, k, d.tensors, source=f"delta {k}")
            except ValueError as exc:
                raise DeltaError(str(exc)) from exc
    module.requires_grad_(False)
    return backbone.with_tunable(module)


def merge_delta(backbone: Backbone, delta: Delta) -> dict[str, torch.Tensor]:
    """Plain generator state dict with the update folded in (W + scale · B A); loads strictly into a fresh
    generator of the preset, e.g. to export a standalone checkpoint."""
    return merged_state_dict(apply_delta(backbone, delta).tunable(), 0)


def delta_latent(delta: Delta) -> Latent:
    """The painting's inverted latent z*: name -> (1, D) float32 (copies)."""
    return {n: t.clone() for n, t in delta.metadata.latent.items()}


def delta_latents(deltas: Sequence[Delta]) -> Latent:
    """The latents of K deltas concatenated in order: name -> (K, D), for rendering `apply_deltas` output."""
    names = set(deltas[0].metadata.latent)
    for d in deltas:
        if set(d.metadata.latent) != names:
            raise DeltaError(f"deltas have different latent names: {sorted(names)} vs {sorted(d.metadata.latent)}")
    return {n: torch.cat([d.metadata.latent[n].reshape(1, -1) for d in deltas]) for n in sorted(names)}


def painting_delta(module: nn.Module, index: int, metadata: DeltaMetadata) -> Delta:
    """Painting `index` of a tuned generator as an in-memory `Delta` (what `save_delta` would write)."""
    tensors = adapter_state(module, index)
    return Delta(tensors=tensors, metadata=metadata)


def _structure(config: DeltaConfig) -> tuple:
    return (config.mode, config.rank, float(config.alpha), config.include_mapping)


__all__ = [
    "BatchedLoRALinear", "Delta", "DeltaConfig", "DeltaError", "DeltaMetadata", "FORMAT", "FORMAT_VERSION",
    "adapter_state", "apply_delta", "apply_deltas", "attach_adapters", "check_delta_fits", "decode_delta",
    "delta_latent", "delta_latents", "encode_delta", "load_delta", "lora_layers", "merge_delta", "package_version",
    "painting_delta", "save_delta",
]
