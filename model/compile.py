"""torch.compile for a backbone's hot functions, with the eager function as the fallback.

Compiling is opt-in (`BackboneSettings.compile`): it pays on GPUs and, less, on CPUs with a C++ compiler, costs
a warm-up per input shape, and can fail where a compiler or an op is missing. A failure, when compiling or when
the compiled function first runs, logs one warning and the eager function serves every later call, so a job never
fails because of compiling.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


class CompiledOrEager:
    """`fn` through `torch.compile(fn, backend=backend)`; on any error from compiling or the compiled call, one
    warning, then `fn` itself for this and every later call (the eager result is the reference either way)."""

    def __init__(self, fn: Callable, backend: str = "inductor", name: str | None = None):
        self.eager = fn
        self.backend = backend
        self.name = name or getattr(fn, "__qualname__", repr(fn))
        self.failure: str | None = None
        try:
            self.compiled: Callable | None = torch.compile(fn, backend=backend, dynamic=None)
        except Exception as e:                      # unknown backend, missing compiler, unsupported platform
            self._fail(e)

    def _fail(self, error: Exception) -> None:
        self.compiled = None
        self.failure = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        log.warning("torch.compile(backend=%r) of %s failed, running it eagerly instead: %s", self.backend,
                    self.name, self.failure)

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except torch.OutOfMemoryError:
                raise                               # the caller's to handle; eager would need the memory too
            except Exception as e:                  # a compiler error surfaces on the first call with new shapes;
                self._fail(e)                       # an error of the function itself recurs in the eager call
        return self.eager(*args, **kwargs)


__all__ = ["CompiledOrEager"]
