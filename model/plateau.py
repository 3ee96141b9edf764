"""Early stopping on a loss plateau, per painting, for both tuning stages (beyond the paper: a cost saving).

The paper runs a fixed number of steps per stage. Most of stage 2's loss drop happens in its first tens of
steps (`python -m bench.tuning curves`), so a painting whose smoothed loss has stopped improving can stop early.
In a batch of k paintings each painting stops on its own: from its stop on, its loss leaves the optimised sum and
its rows of the batched parameters (its latent rows in stage 1, its adapters in stage 2) are put back after every
optimizer step, so they stay exactly as they were when it stopped while the others go on. The batch ends when
every painting has stopped (or failed) or at the stage's step count. A stopped painting of an unfinished batch is
still rendered with the others until the batch ends (the batch's tensors keep their size): the seconds saved are
those of the steps the whole batch no longer runs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from artmator.model.fields import setting


@dataclass(frozen=True)
class PlateauConfig:
    """When a painting's loss counts as flat (see `plateaued`). patience 0 = off: every step is run."""

    patience: int = setting(0, "Stop a painting once its smoothed loss has not improved by min_rel_improvement "
                               "for this many steps; 0 never stops early (every configured step runs).")
    min_rel_improvement: float = setting(0.01, "Smallest relative drop of the smoothed loss, below the best seen "
                                               "before the last `patience` steps, that counts as progress.")
    window: int = setting(10, "Steps averaged into the smoothed loss (a moving mean over this many steps).")
    min_steps: int = setting(20, "No painting stops before this many steps.")

    def __post_init__(self):
        if self.patience < 0 or self.window < 1 or self.min_steps < 0:
            raise ValueError(f"early stopping needs patience >= 0, window >= 1 and min_steps >= 0 (got patience "
                             f"{self.patience}, window {self.window}, min_steps {self.min_steps})")
        if not 0.0 <= self.min_rel_improvement < 1.0:
            raise ValueError(f"min_rel_improvement is a fraction in [0, 1), got {self.min_rel_improvement}")

    @property
    def enabled(self) -> bool:
        return self.patience > 0


NO_EARLY_STOP = PlateauConfig()


def plateaued(curve: Sequence[float], config: PlateauConfig) -> bool:
    """True when a painting's loss curve (one value per step so far) has reached a plateau.

    Statistic: the moving mean of the last `window` losses. In the last `patience` steps its best (lowest) value
    must undercut the best moving mean before them by `min_rel_improvement` (relative), else the curve is flat.
    Why a moving mean and not the raw losses: stage 2 draws one random view (and random crops) per step, so its
    per-step losses scatter by more than they improve per step once the steep part is over. The running minimum
    of raw noisy losses keeps falling by luck alone (a new extreme draw every so often), which would never stop,
    and a single step's value says little; a mean over `window` steps cuts the scatter by about sqrt(window), so
    what is compared is the trend. Stage 1's loss (one fixed view) is smooth; the same test simply sees its trend.
    Comparing against the best mean *before* the patience span (not the first one) makes a slow but steady
    descent count as progress and a curve that wobbles around a level count as flat.
    """
    n = len(curve)
    if not config.enabled or n < max(config.min_steps, config.window + config.patience):
        return False
    w = config.window
    running = sum(curve[:w])
    means = [running / w]
    for i in range(w, n):
        running += curve[i] - curve[i - w]
        means.append(running / w)
    before, recent = min(means[:-config.patience]), min(means[-config.patience:])
    return not recent < before - config.min_rel_improvement * abs(before)


class EarlyStop:
    """Per-painting stopping state of one stage's batch of K paintings.

    `update(step, losses, failed)` after each optimizer step: records the finite losses, stops paintings whose curve is
    flat, and puts the stopped paintings' rows (dim 0 of every batched parameter) back to their values at their
    stop. `active` says which paintings still take part in the optimised sum.
    """

    def __init__(self, config: PlateauConfig, num_paintings: int, params: Sequence[torch.Tensor]):
        # One painting alone: its stop ends the loop, nothing needs freezing (its parameters need not be batched,
        # e.g. a full generator copy in full-delta mode).
        params = list(params) if num_paintings > 1 else []
        for p in params:
            if p.dim() == 0 or p.shape[0] != num_paintings:
                raise ValueError(f"early stopping freezes dim 0 (one row per painting) of batched parameters; got a "
                                 f"parameter of shape {tuple(p.shape)} for {num_paintings} painting(s)")
        self.config = config
        self.params = list(params)
        self.curves: list[list[float]] = [[] for _ in range(num_paintings)]
        self.steps_used: list[int | None] = [None] * num_paintings        # None: still running
        self._frozen: dict[int, list[torch.Tensor]] = {}

    @property
    def active(self) -> list[bool]:
        return [s is None for s in self.steps_used]

    def all_stopped(self) -> bool:
        return not any(self.active)

    @torch.no_grad()
    def update(self, step: int, losses: torch.Tensor, failed: Sequence[int | None]) -> None:
        """losses: (K,) of step `step` (0-based); failed: per painting the step its loss went non-finite, or None."""
        self._restore()
        if not self.config.enabled:                         # off: only failed paintings stop (no loss read back)
            for k, f in enumerate(failed):
                if f is not None and self.steps_used[k] is None:
                    self._stop(k, step + 1)
            return
        values = losses.detach().float().cpu().tolist()
        for k, value in enumerate(values):
            if self.steps_used[k] is not None:
                continue
            if failed[k] is not None:                       # out of the sum already; nothing to tune any more
                self._stop(k, step + 1)
                continue
            self.curves[k].append(value)
            if plateaued(self.curves[k], self.config):
                self._stop(k, step + 1)

    def finish(self, steps_run: int) -> list[int]:
        """Steps each painting used: its stop step, or every step run."""
        return [steps_run if s is None else s for s in self.steps_used]

    def _stop(self, k: int, steps: int) -> None:
        self.steps_used[k] = steps
        self._frozen[k] = [p.detach()[k].clone() for p in self.params]

    def _restore(self) -> None:
        # Adam moves a row with a zero gradient through its momentum: put stopped rows back after every step.
        for k, rows in self._frozen.items():
            for p, row in zip(self.params, rows):
                p.data[k].copy_(row)


__all__ = ["EarlyStop", "NO_EARLY_STOP", "PlateauConfig", "plateaued"]
