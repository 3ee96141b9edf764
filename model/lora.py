"""Per-painting low-rank adapters (LoRA) over a shared, frozen generator: K paintings tune in one batch.

Stage 2 of 3DArtmator tunes the generator G so that it reproduces one painting. Tuning a full copy per painting
costs the whole generator (7.7 MB for the official preset) per painting in memory and on disk. Here every
targeted layer is wrapped in a `BatchedLoRA` layer that keeps the base weight W shared and frozen and adds K
independent low-rank updates, one per painting in the batch:

    nn.Linear:  y_k = W x_k + b + scale · B_k (A_k x_k)          A_k: (r, in), B_k: (out, r)
    nn.Conv2d:  y_k = W * x_k + b + scale · B_k · (A_k * x_k)    A_k: (r, in, kh, kw) with W's stride, padding
                and dilation; B_k: (out, r), a 1×1 conv; their composition is the conv with weight B_k A_k
    scale = alpha / rank; B_k starts at zero, so a fresh adapter is an exact no-op.

Batch element k of every input goes through adapter k, so K paintings are tuned (or rendered) in one forward
pass without a Python loop. `attach_adapters` builds such a generator from a plain one; `adapter_state` /
`load_adapter` move one painting's adapter in and out; `merged_state_dict` folds it back into plain weights.
Persistence (files, metadata, base binding) lives in `model.delta`.

Include rule (which layers get adapters), by isinstance only; the tunable module declares both sets, so this
module knows no backbone (`Backbone.adapter_targets`, `Backbone.adapter_exclusions`):
  * every module of a kind in the tunable module's `ADAPTER_TARGETS` (default: `nn.Linear`), in
    `named_modules` order. LoRA layers exist for `nn.Linear` and `nn.Conv2d` (groups 1, zero padding) that
    keep their class's forward; a declared kind without one is an error, never a silent skip. A modulated
    convolution adapts through the plain `nn.Conv2d` it holds (its demodulation reads the base weight);
  * except those inside the module types it declares in `ADAPTER_EXCLUSIONS` (AniFaceGAN: its mapping network)
    unless `DeltaConfig.include_mapping`.
A tunable module without any such layer is an error (never an empty optimizer).
Each adapter's rank is min(rank, fan_in, out) (fan_in = in · kh · kw for a conv): at that rank B·A can already
express any update of the layer, so the clamp loses nothing and keeps narrow heads (256 -> 1 density) cheap.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from artmator.model.fields import setting


DeltaMode = Literal["lora", "full"]
StorageDtype = Literal["float16", "float32"]
_STORAGE_DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class DeltaConfig:
    """How a painting's stage-2 weight update is parameterised and stored (rank, alpha and include_mapping only
    matter for "lora")."""

    mode: DeltaMode = setting("lora", "'lora' tunes low-rank adapters over the frozen shared generator, many "
                                      "paintings per generator; 'full' tunes a full copy of the generator "
                                      "(paper-exact, one painting per copy, and the delta is the whole generator).")
    rank: int = setting(4, "Adapter rank r (>= 1), clamped per layer to min(r, in, out). 4 keeps the official "
                           "preset's delta at ~0.8 % of the generator's fp32 bytes (60 kB vs 7.7 MB, fp16).")
    alpha: float = setting(4.0, "Adapter scale numerator: updates are multiplied by alpha / rank. As in the LoRA "
                                "paper, keep alpha fixed when trying other ranks so the learning rate need not be "
                                "retuned.")
    include_mapping: bool = setting(False, "Also adapt the mapping network (latent -> FiLM frequencies/phases). "
                                           "Off by default: its last layer alone is 61 % of the generator, z* "
                                           "already steers that path and is stored with the delta; on, it adds "
                                           "~0.7 % of the generator's bytes and a K > 1 generator cannot compute the "
                                           "truncation average (psi != 1 then needs K == 1).")
    storage_dtype: StorageDtype = setting("float16", "dtype of adapter (or full-mode weight) tensors in delta "
                                                     "files; latents are always float32. float16 halves the file "
                                                     "(relative rounding error <= 2^-11 per value).")

    def __post_init__(self) -> None:
        if self.mode not in ("lora", "full"):
            raise ValueError(f"DeltaConfig.mode must be 'lora' or 'full', got {self.mode!r}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"DeltaConfig.rank must be an integer >= 1, got {self.rank!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not (
                math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"DeltaConfig.alpha must be a finite number > 0, got {self.alpha!r}")
        if not isinstance(self.include_mapping, bool):
            raise ValueError(f"DeltaConfig.include_mapping must be True or False, got {self.include_mapping!r}")
        if self.storage_dtype not in _STORAGE_DTYPES:
            raise ValueError(f"DeltaConfig.storage_dtype must be one of {sorted(_STORAGE_DTYPES)}, "
                             f"got {self.storage_dtype!r}")

    @property
    def scale(self) -> float:
        """The factor on every adapter update: alpha / rank."""
        return float(self.alpha) / self.rank

    @property
    def torch_storage_dtype(self) -> torch.dtype:
        return _STORAGE_DTYPES[self.storage_dtype]

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "alpha": float(self.alpha)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "DeltaConfig":
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"a DeltaConfig JSON must be an object, got {text[:80]!r}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown DeltaConfig fields {unknown}; known are {sorted(cls.__dataclass_fields__)}")
        return cls(**data)


class BatchedLoRA(nn.Module):
    """A frozen shared layer plus K independent low-rank adapters; adapter k serves batch element k.

    lora_A: (K, r, *fan_in_shape), small uniform random (seeded per adapter); lora_B: (K, out, r), zero, so a
    fresh adapter is an exact no-op. The base layer is held, not copied: its parameters are whatever tensors it
    holds (`attach_adapters` gives it frozen views of the original generator's storage). Subclasses say how the
    update enters the forward pass; `delta_weight` (the dense update in the base weight's shape) is common.
    """

    def __init__(self, base: nn.Module, num_adapters: int, rank: int, scale: float, seeds: Sequence[int] | None,
                 fan_in_shape: tuple[int, ...], out_features: int):
        super().__init__()
        if num_adapters < 1:
            raise ValueError(f"num_adapters must be >= 1, got {num_adapters}")
        seeds = list(range(num_adapters)) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != num_adapters:
            raise ValueError(f"need one seed per adapter: {num_adapters} adapters, {len(seeds)} seeds")
        self.base = base
        self.scale = float(scale)
        self.fan_in = math.prod(fan_in_shape)
        self.rank = max(1, min(int(rank), self.fan_in, out_features))
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(num_adapters, self.rank, *fan_in_shape, **like))   # (K, r, *fan_in)
        self.lora_B = nn.Parameter(torch.zeros(num_adapters, out_features, self.rank, **like))   # (K, out, r)
        for k, seed in enumerate(seeds):
            self.reset_adapter(k, seed)

    # ---- the base layer's interface (code that reads `layer.weight` keeps working) -------------------------
    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def num_adapters(self) -> int:
        return self.lora_A.shape[0]

    def reset_adapter(self, index: int, seed: int) -> None:
        """Re-initialise adapter `index`: A ~ U(±1/sqrt(fan_in)) from `seed`, B = 0 (an exact no-op again)."""
        g = torch.Generator().manual_seed(int(seed))
        bound = 1.0 / math.sqrt(self.fan_in)
        a = torch.rand(self.rank, self.fan_in, generator=g, dtype=torch.float64) * (2 * bound) - bound
        with torch.no_grad():
            self.lora_A[index].copy_(a.reshape(self.lora_A.shape[1:]).to(self.lora_A.dtype))
            self.lora_B[index].zero_()

    def delta_weight(self, index: int) -> torch.Tensor:
        """The dense update adapter `index` adds to the base weight: scale · B_k A_k in the weight's shape."""
        a = self.lora_A[index].reshape(self.rank, -1)                              # (r, fan_in)
        return (self.scale * (self.lora_B[index] @ a)).reshape(self.base.weight.shape)

    def _check_batch(self, x: torch.Tensor, min_dim: int) -> None:
        K = self.num_adapters
        if x.dim() < min_dim or x.shape[0] != K:
            raise ValueError(
                f"this layer holds {K} adapters (one per painting) but got input of shape {tuple(x.shape)}; "
                f"its first dimension must be {K}, one batch element per adapter. Render or tune exactly {K} "
                "latents at once, or attach a single adapter (it broadcasts over any batch).")


class BatchedLoRALinear(BatchedLoRA):
    """LoRA over an `nn.Linear`: lora_A (K, r, in), lora_B (K, out, r)."""

    def __init__(self, base: nn.Linear, num_adapters: int, rank: int, scale: float,
                 seeds: Sequence[int] | None = None):
        if not isinstance(base, nn.Linear):
            raise TypeError(f"BatchedLoRALinear wraps an nn.Linear, got {type(base).__name__}")
        super().__init__(base, num_adapters, rank, scale, seeds, (base.in_features,), base.out_features)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """W x + b + scale · B_k A_k x for batch element k: (K, ..., in) -> (K, ..., out).

        With a single adapter (K == 1) the input may have any leading shape (B, ..., in): it broadcasts.
        """
        K = self.num_adapters
        lead = x.shape[:-1]
        base = F.linear(x, self.base.weight, self.base.bias)                      # (*lead, out)
        if K == 1:
            flat = x.reshape(-1, self.in_features)                                # (M, in)
            hidden = flat @ self.lora_A[0].transpose(0, 1)                        # (M, r)
            out = torch.addmm(base.reshape(-1, self.out_features), hidden, self.lora_B[0].transpose(0, 1),
                              alpha=self.scale)                                   # (M, out)
            return out.reshape(*lead, self.out_features)
        self._check_batch(x, 2)
        flat = x.reshape(K, -1, self.in_features)                                 # (K, M, in)
        hidden = torch.bmm(flat, self.lora_A.transpose(1, 2))                    # (K, M, r)
        out = torch.baddbmm(base.reshape(K, -1, self.out_features), hidden, self.lora_B.transpose(1, 2),
                            alpha=self.scale)                                     # (K, M, out)
        return out.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, adapters={self.num_adapters}, "
                f"rank={self.rank}, scale={self.scale:g}")


class BatchedLoRAConv2d(BatchedLoRA):
    """LoRA over an `nn.Conv2d` (groups 1, zero padding): lora_A (K, r, in, kh, kw), lora_B (K, out, r).

    The down projection A_k is a conv with the base's kernel size, stride, padding and dilation; the up
    projection B_k a 1×1 conv. K > 1 adapters run as one grouped convolution over the batch laid side by side.
    """

    def __init__(self, base: nn.Conv2d, num_adapters: int, rank: int, scale: float,
                 seeds: Sequence[int] | None = None):
        if not isinstance(base, nn.Conv2d):
            raise TypeError(f"BatchedLoRAConv2d wraps an nn.Conv2d, got {type(base).__name__}")
        if base.groups != 1 or base.padding_mode != "zeros":
            raise ValueError(f"LoRA adapters need a plain convolution (groups=1, padding_mode='zeros'); this one "
                             f"has groups={base.groups}, padding_mode={base.padding_mode!r}. Tune it with "
                             "--delta-mode full or leave it out of the backbone's ADAPTER_TARGETS.")
        kh, kw = base.kernel_size
        super().__init__(base, num_adapters, rank, scale, seeds, (base.in_channels, kh, kw), base.out_channels)

    @property
    def in_channels(self) -> int:
        return self.base.in_channels

    @property
    def out_channels(self) -> int:
        return self.base.out_channels

    def _down(self, x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
        b = self.base
        return F.conv2d(x, weight, None, b.stride, b.padding, b.dilation, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv(x, W) + b + scale · conv1x1(conv(x, A_k), B_k) for batch element k: (K, in, H, W) -> (K, out, H', W').

        With a single adapter (K == 1) the batch may have any size N: it broadcasts.
        """
        K, r = self.num_adapters, self.rank
        base = self.base(x)                                                       # (N, out, H', W')
        if K == 1:
            hidden = self._down(x, self.lora_A[0], 1)                             # (N, r, H', W')
            return base + self.scale * torch.einsum("or,nrhw->nohw", self.lora_B[0], hidden)
        self._check_batch(x, 4)
        _, c, h, w = x.shape
        side_by_side = x.reshape(1, K * c, h, w)                                  # (1, K·in, H, W)
        hidden = self._down(side_by_side, self.lora_A.reshape(K * r, *self.lora_A.shape[2:]), K)  # (1, K·r, H', W')
        hidden = hidden.reshape(K, r, *hidden.shape[2:])                          # (K, r, H', W')
        return base + self.scale * torch.einsum("kor,krhw->kohw", self.lora_B, hidden)

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}, out={self.out_channels}, kernel={tuple(self.base.kernel_size)}, "
                f"adapters={self.num_adapters}, rank={self.rank}, scale={self.scale:g}")


def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight each batch element sees: (K, *weight.shape), W + scale · B_k A_k for an adapted layer and
    W[None] for a plain one. For modules that compute something from a layer's weight besides applying it (a
    modulated convolution's demodulation), so that adapted, merged and fully tuned generators agree."""
    if not isinstance(layer, BatchedLoRA):
        return layer.weight.unsqueeze(0)
    K, r = layer.num_adapters, layer.rank
    delta = layer.scale * torch.bmm(layer.lora_B, layer.lora_A.reshape(K, r, -1))  # (K, out, fan_in)
    return layer.weight.unsqueeze(0) + delta.reshape(K, *layer.weight.shape)


# The layer kinds LoRA can adapt, and the adapter layer for each.
ADAPTER_LAYERS: dict[type[nn.Module], type[BatchedLoRA]] = {nn.Linear: BatchedLoRALinear, nn.Conv2d: BatchedLoRAConv2d}


# ---- selecting and wrapping targets ------------------------------------------------------------------------
def adapter_targets(generator: nn.Module) -> tuple[type[nn.Module], ...]:
    """The layer kinds the tunable module declares in `ADAPTER_TARGETS` (default: nn.Linear)."""
    return tuple(getattr(generator, "ADAPTER_TARGETS", (nn.Linear,)))


def target_layers(generator: nn.Module, config: DeltaConfig) -> list[str]:
    """Names (relative to `generator`) of the layers that get adapters, by the module docstring's rule.

    The tunable module declares what to adapt (`ADAPTER_TARGETS`) and what to leave out (`ADAPTER_EXCLUSIONS`,
    module types), so this generic code knows no backbone."""
    targets = adapter_targets(generator)
    for kind in targets:
        if not (isinstance(kind, type) and issubclass(kind, tuple(ADAPTER_LAYERS))):
            raise ValueError(f"{type(generator).__name__} declares adapter target {getattr(kind, '__name__', kind)!r}, "
                             f"but LoRA adapters exist for {_kind_names(tuple(ADAPTER_LAYERS))} only; declare the "
                             "plain layers it is built from, or tune it with DeltaConfig(mode='full') "
                             "(--delta-mode full)")
    exclude = tuple(getattr(generator, "ADAPTER_EXCLUSIONS", ()))
    skip: list[str] = []
    names = []
    for name, module in generator.named_modules():
        if isinstance(module, BatchedLoRA):
            raise ValueError(f"{name or 'the module'} already has adapters; attach adapters to the plain generator "
                             "(e.g. backbone.tunable() of a backbone loaded without a delta)")
        if not config.include_mapping and exclude and isinstance(module, exclude):
            skip.append(name + ".")
        elif targets and isinstance(module, targets) and not any(name.startswith(s) for s in skip):
            if not name:
                raise ValueError("attach_adapters needs a module containing target layers, not a bare layer")
            _adapter_layer(name, module)
            names.append(name)
    return names


def _adapter_layer(name: str, module: nn.Module) -> type[BatchedLoRA]:
    """The adapter class for a target layer; refuses subclasses whose own forward LoRA would bypass."""
    for kind, adapter in ADAPTER_LAYERS.items():
        if isinstance(module, kind):
            if type(module).forward is not kind.forward:
                raise ValueError(f"{name} is a {type(module).__name__}, an {_kind_names((kind,))} with its own "
                                 "forward; a LoRA adapter would bypass it. Build it around a plain "
                                 f"{_kind_names((kind,))}, or tune with --delta-mode full.")
            return adapter
    raise ValueError(f"{name} ({type(module).__name__}) has no LoRA adapter; kinds: "
                     f"{_kind_names(tuple(ADAPTER_LAYERS))}")


def _kind_names(kinds: tuple[type, ...]) -> str:
    return " or ".join(f"nn.{k.__name__}" if k.__module__.startswith("torch.nn") else k.__name__ for k in kinds)


def attach_adapters(generator: nn.Module, config: DeltaConfig, num_adapters: int,
                    seed: int | Sequence[int]) -> nn.Module:
    """A new generator tree for stage 2; `generator` itself is left untouched and stays usable as G_ori.

    lora: every module is a copy, but every parameter is a frozen `nn.Parameter` sharing storage with the
        original's (no weight copy); targeted layers become `BatchedLoRA` layers with `num_adapters` adapters.
        Only adapter parameters require grad. `seed` is one int per adapter, or an int s giving adapter k the
        seed s + k. Each adapter's initialisation depends only on its own seed and the layer names, so a
        painting starts from the same adapter whether it is tuned alone or in a batch.
    full: a deep copy with every parameter trainable (paper-exact tuning). A full copy tunes one painting,
        so `num_adapters` must be 1.
    """
    seeds = _adapter_seeds(seed, num_adapters)
    if config.mode == "full":
        if num_adapters != 1:
            raise ValueError(f"full mode tunes one painting per generator copy; got num_adapters={num_adapters}. "
                             "Make one copy per painting, or use mode='lora' to tune several in one generator.")
        tuned = copy.deepcopy(generator)
        tuned.requires_grad_(True)
        return tuned
    targets = target_layers(generator, config)
    if not targets:
        kinds = adapter_targets(generator)
        excluded = [t.__name__ for t in getattr(generator, "ADAPTER_EXCLUSIONS", ())]
        what = (f"no {_kind_names(kinds)} layer outside {excluded}" if kinds
                else "an empty ADAPTER_TARGETS (no layer kind)")
        raise ValueError(f"{type(generator).__name__} has {what} to put LoRA adapters on; tune it with "
                         "DeltaConfig(mode='full') (--delta-mode full)")
    adapted = _frozen_structural_copy(generator)
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = adapted.get_submodule(parent_name)
        layer = getattr(parent, child)
        layer_seeds = [_layer_seed(s, name) for s in seeds]
        setattr(parent, child, _adapter_layer(name, layer)(layer, num_adapters, config.rank, config.scale, layer_seeds))
    return adapted


def _adapter_seeds(seed: int | Sequence[int], num_adapters: int) -> list[int]:
    if num_adapters < 1:
        raise ValueError(f"num_adapters must be >= 1, got {num_adapters}")
    if isinstance(seed, int):
        return [seed + k for k in range(num_adapters)]
    seeds = [int(s) for s in seed]
    if len(seeds) != num_adapters:
        raise ValueError(f"got {len(seeds)} seeds for {num_adapters} adapters; give one seed per painting")
    return seeds


def _layer_seed(seed: int, layer_name: str) -> int:
    """A per-(painting, layer) seed, independent of the other layers and of the batch composition."""
    digest = hashlib.sha256(f"{seed}/{layer_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _frozen_structural_copy(module: nn.Module) -> nn.Module:
    """Copy of the module tree whose parameters are frozen new Parameters over the SAME storage; buffers shared."""
    memo: dict[int, object] = {}
    for p in module.parameters():
        memo[id(p)] = nn.Parameter(p.detach(), requires_grad=False)
    for b in module.buffers():
        memo[id(b)] = b
    return copy.deepcopy(module, memo)


# ---- one painting's adapter in and out ---------------------------------------------------------------------
def lora_layers(module: nn.Module) -> dict[str, BatchedLoRA]:
    """name -> adapter layer, in `named_modules` order (empty for a plain or full-mode generator)."""
    return {n: m for n, m in module.named_modules() if isinstance(m, BatchedLoRA)}


def num_adapters(module: nn.Module) -> int:
    """K of an adapted generator (1 for a plain or full-mode generator)."""
    layers = list(lora_layers(module).values())
    return layers[0].num_adapters if layers else 1


def adapter_state(module: nn.Module, index: int) -> dict[str, torch.Tensor]:
    """One painting's delta tensors (detached copies), named relative to the generator.

    Adapted generator: `<layer>.lora_A` (r, in) or (r, in, kh, kw) and `<layer>.lora_B` (out, r) for adapter `index`,
    e.g. `siren.network.3.layer.lora_A`. A generator without adapters (full mode) is one painting: index must
    be 0 and the result is its whole state dict.
    """
    layers = lora_layers(module)
    k = _check_index(index, num_adapters(module))
    if not layers:
        return {n: t.detach().clone() for n, t in module.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        out[f"{name}.lora_A"] = layer.lora_A[k].detach().clone()
        out[f"{name}.lora_B"] = layer.lora_B[k].detach().clone()
    return out


def load_adapter(module: nn.Module, index: int, tensors: Mapping[str, torch.Tensor], *,
                 source: str = "tensors") -> None:
    """Set adapter `index` of an adapted generator from `adapter_state`-style tensors (strict names and shapes)."""
    layers = lora_layers(module)
    if not layers:
        raise ValueError("load_adapter needs a generator with adapters (see attach_adapters)")
    k = _check_index(index, num_adapters(module))
    expected = {f"{n}.lora_{ab}": (l.lora_A if ab == "A" else l.lora_B)[k]
                for n, l in layers.items() for ab in ("A", "B")}
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    wrong = [f"{n}: {tuple(tensors[n].shape)} vs {tuple(t.shape)}" for n, t in expected.items()
             if n in tensors and tuple(tensors[n].shape) != tuple(t.shape)]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source} do not fit this generator's adapters (missing {_few(missing)}, unexpected {_few(unexpected)}, "
            f"shape file vs model {_few(wrong)}); the delta was made with another rank, include_mapping or "
            "architecture. Load the backbone preset and DeltaConfig the delta was tuned with.")
    with torch.no_grad():
        for name, target in expected.items():
            target.copy_(tensors[name].to(device=target.device, dtype=target.dtype))


def merged_state_dict(module: nn.Module, index: int = 0) -> dict[str, torch.Tensor]:
    """Plain generator state dict with adapter `index` folded in: W + scale · B A under the original names.

    Loads strictly into a freshly built generator of the same architecture. A generator without adapters
    returns (copies of) its own state dict.
    """
    layers = lora_layers(module)
    k = _check_index(index, num_adapters(module))
    rename: dict[str, str] = {}
    for name in layers:
        rename[f"{name}.base.weight"] = f"{name}.weight"
        rename[f"{name}.base.bias"] = f"{name}.bias"
        rename[f"{name}.lora_A"] = rename[f"{name}.lora_B"] = ""
    state: dict[str, torch.Tensor] = {}
    for key, t in module.state_dict().items():
        new = rename.get(key, key)
        if new:
            state[new] = t.detach().clone()
    with torch.no_grad():
        for name, layer in layers.items():
            w = state[f"{name}.weight"]
            state[f"{name}.weight"] = (w.double() + layer.delta_weight(k).double()).to(w.dtype)
    return state


def trainable_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
    """The parameters stage 2 optimises: adapters in lora mode, everything in full mode."""
    return (p for p in module.parameters() if p.requires_grad)


def _check_index(index: int, k: int) -> int:
    if not 0 <= int(index) < k:
        raise IndexError(f"adapter index {index} out of range: the generator holds {k} adapter(s)")
    return int(index)


def _few(items: list[str], n: int = 4) -> str:
    shown = ", ".join(items[:n])
    return f"[{shown}{f', … {len(items) - n} more' if len(items) > n else ''}]"


__all__ = [
    "ADAPTER_LAYERS", "BatchedLoRA", "BatchedLoRAConv2d", "BatchedLoRALinear", "DeltaConfig", "adapter_state",
    "adapter_targets", "attach_adapters", "effective_weight", "load_adapter", "lora_layers", "merged_state_dict",
    "num_adapters", "target_layers", "trainable_parameters",
]
