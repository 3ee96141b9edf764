"""The 3DArtmator losses, one function each, every one returning PER-SAMPLE values of shape (B,).

k paintings tuned together in one batch keep independent losses; callers weight and sum them.
Images are (B, 3, H, W) in [-1, 1] throughout.

- `content_loss`:     3DArtmator, stage 1 (localization), content-analogous loss L_cr = λ1·LPIPS + λ2·L2.
- `clip_direction`:   the CLIP-space direction δ = E(aug a) − E(aug b) used by L_dir.
- `directional_loss`: 3DArtmator, stage 2 (stylization), style-directional loss L_dir = 1 − cos(δ_guide, δ_opt).
- `spatial_loss`:     3DArtmator, stage 2 (stylization), spatial loss L_spa = LPIPS(G_trn(z*, θ), I_ref).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from artmator.model.augment import AugmentConfig, augment_pair
from artmator.model.encoders import ClipEnsemble, ClipImageEncoder

LpipsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   # (B,3,H,W), (B,3,H,W) -> (B,)
Direction = torch.Tensor | tuple[torch.Tensor, ...]               # (B, D), or one (B, D_k) per CLIP encoder


def content_loss(pred: torch.Tensor, target: torch.Tensor, lpips_fn: LpipsFn,
                 lambda_lpips: float = 1.0, lambda_l2: float = 1.0) -> torch.Tensor:
    """3DArtmator, stage 1 (localization), content-analogous loss L_cr = λ1·LPIPS(pred, target) + λ2·L2.

    pred: G_ori(z, θ) (B, 3, H, W); target: the painting I_ref (B, 3, H, W); both in [-1, 1].
    Returns (B,). The paper uses λ1 = λ2 = 1.
    """
    _check_pair(pred, target, "content_loss")
    return lambda_lpips * _per_sample(lpips_fn(pred, target), pred) + lambda_l2 * l2_loss(pred, target)


def l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The L2 term of L_cr: mean squared error over channels and pixels of images in [-1, 1] -> (B,).

    On the [-1, 1] scale, so it is 4× the MSE of the same images on a [0, 1] scale.
    """
    _check_pair(pred, target, "l2_loss")
    return (pred - target).pow(2).flatten(1).mean(1)


def clip_direction(encoder: ClipImageEncoder | ClipEnsemble, a: torch.Tensor, b: torch.Tensor,
                   augment_config: AugmentConfig, generator: torch.Generator | None = None) -> Direction:
    """The CLIP-space direction δ = E(aug a) − E(aug b) of L_dir (3DArtmator, stage 2).

    δ_guide = clip_direction(E, I_ref, G_ori(z*, θ)); δ_opt = clip_direction(E, G_trn(z*, θ_i), G_ori(z*, θ_i)).
    a, b: (B, 3, H, W) in [-1, 1]. Both images of a pair get the same crops (see `model.augment`). Per crop
    the unit embeddings are differenced, then the differences are averaged over the crops; since the mean is
    linear this equals the difference of the crop-averaged embeddings (which are not re-normalised).
    Returns (B, D), or a tuple with one (B, D_k) per encoder for a `ClipEnsemble`.
    Gradients reach `a`/`b` when they require grad; build δ_guide under `torch.no_grad()`.
    """
    _check_pair(a, b, "clip_direction")
    a_aug, b_aug = augment_pair(a, b, augment_config, generator)            # (B·n_crops, 3, H', W') each
    encoders = encoder.encoders if isinstance(encoder, ClipEnsemble) else [encoder]
    deltas = tuple(_mean_over_crops(enc(a_aug) - enc(b_aug), a.shape[0]) for enc in encoders)
    return deltas if isinstance(encoder, ClipEnsemble) else deltas[0]


def directional_loss(delta_guide: Direction, delta_opt: Direction, eps: float = 1e-6) -> torch.Tensor:
    """3DArtmator, stage 2 (stylization), style-directional loss L_dir = 1 − cos(δ_guide, δ_opt) -> (B,).

    delta_guide, delta_opt: (B, D) each, or equal-length tuples of (B, D_k) from a CLIP ensemble, in which case
    the loss is the mean over encoders. Per sample: 0 parallel, 1 orthogonal, 2 opposite.
    A direction shorter than `eps` is treated as having length `eps` (cosine → 0, loss → 1, finite gradient).
    This happens on the first stage-2 step, where G_trn == G_ori makes δ_opt exactly 0: the gradient then
    points along δ_guide with magnitude ~1/eps, which a scale-invariant optimizer such as Adam absorbs.
    """
    if isinstance(delta_guide, tuple) or isinstance(delta_opt, tuple):
        if not (isinstance(delta_guide, tuple) and isinstance(delta_opt, tuple)) or len(delta_guide) != len(delta_opt):
            raise ValueError("directional_loss: both directions must come from the same encoder or ensemble.")
        return torch.stack([directional_loss(g, o, eps) for g, o in zip(delta_guide, delta_opt)]).mean(0)
    if delta_guide.ndim != 2 or delta_guide.shape != delta_opt.shape:
        raise ValueError(f"directional_loss needs two (B, D) directions of one shape, got "
                         f"{tuple(delta_guide.shape)} and {tuple(delta_opt.shape)}.")
    return 1.0 - _cosine(delta_guide, delta_opt, eps)


def spatial_loss(pred: torch.Tensor, reference: torch.Tensor, lpips_fn: LpipsFn) -> torch.Tensor:
    """3DArtmator, stage 2 (stylization), spatial loss L_spa = LPIPS(G_trn(z*, θ), I_ref) -> (B,).

    pred: G_trn(z*, θ) at the painting's pose; reference: the painting I_ref; (B, 3, H, W) in [-1, 1].
    """
    _check_pair(pred, reference, "spatial_loss")
    return _per_sample(lpips_fn(pred, reference), pred)


def _cosine(x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    # (B, D), (B, D) -> (B,); norms clamped below at eps.
    return (x * y).sum(-1) / (x.norm(dim=-1).clamp_min(eps) * y.norm(dim=-1).clamp_min(eps))


def _mean_over_crops(delta: torch.Tensor, batch: int) -> torch.Tensor:
    # (B·n_crops, D), sample-major -> (B, D)
    return delta.view(batch, -1, delta.shape[-1]).mean(1)


def _per_sample(value: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    # Accept (B,) or lpips' native (B, 1, 1, 1); anything else is a caller bug.
    if value.numel() != images.shape[0]:
        raise ValueError(f"the LPIPS function must return one value per sample ({images.shape[0]}), "
                         f"got shape {tuple(value.shape)}.")
    return value.reshape(images.shape[0])


def _check_pair(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3 or x.shape != y.shape:
        raise ValueError(f"{what} needs two (B, 3, H, W) image batches of one shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}.")
