"""Classifying failures: deterministic ones are recorded once, transient ones are retried with backoff."""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from artmator.model.backbone import ExpressionError
from artmator.model.faces.analyzer import FaceError
from artmator.model.images import PaintingImageError
from artmator.model.weights import WeightsError
from artmator.pipeline.storage import redact_text

T = TypeVar("T")

# error_kind values in reports (documented in the README's troubleshooting table).
DETERMINISTIC = {"image", "face", "expression", "weights", "numerical", "manifest", "config"}
TRANSIENT = {"storage", "oom", "actor_died"}


def classify(exc: BaseException) -> tuple[str, str]:
    """(error_kind, message) for a failure of one painting; messages never contain credentials."""
    if isinstance(exc, PaintingImageError):
        return "image", redact_text(f"{exc.kind}: {exc}")
    if isinstance(exc, FaceError):
        return "face", redact_text(f"{exc.kind}: {exc}")
    if isinstance(exc, ExpressionError):
        return "expression", redact_text(str(exc))
    if isinstance(exc, WeightsError):
        return "weights", redact_text(str(exc))
    if is_oom(exc):
        return "oom", redact_text(f"out of memory: {exc}")
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)) or _is_client_connection_error(exc):
        return "storage", redact_text(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, ValueError):
        return "config", redact_text(str(exc))
    return "internal", redact_text(f"{type(exc).__name__}: {exc}")


# Connection failures of object-store clients that do not derive from OSError: s3fs lets botocore's
# EndpointConnectionError / ConnectTimeoutError / ReadTimeoutError (subclasses of botocore's own ConnectionError
# and HTTPClientError) through untranslated when the endpoint is down; gcsfs/adlfs/http raise aiohttp's ClientError.
_CLIENT_CONNECTION_ERRORS = {"botocore.exceptions.ConnectionError", "botocore.exceptions.HTTPClientError",
                             "aiohttp.client_exceptions.ClientError"}


def _is_client_connection_error(exc: BaseException) -> bool:
    return any(f"{c.__module__}.{c.__qualname__}" in _CLIENT_CONNECTION_ERRORS for c in type(exc).__mro__)


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def is_transient(exc: BaseException) -> bool:
    return classify(exc)[0] in TRANSIENT


def with_retries(fn: Callable[[], T], attempts: int = 4, base_delay_s: float = 0.5, max_delay_s: float = 20.0,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `fn`; on a transient error (storage, OOM) retry with exponential backoff and jitter."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - re-raised unless transient
            if attempt == attempts or not is_transient(exc):
                raise
            if is_oom(exc):
                _free_cuda_cache()
            sleep(min(max_delay_s, base_delay_s * 2 ** (attempt - 1)) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def _free_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
