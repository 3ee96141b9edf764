"""`pipeline.errors`: failure kinds, credential-free messages, and retries with backoff for transient errors only."""
from __future__ import annotations

import pytest
import torch

from artmator.model.anifacegan.expressions import ExpressionError
from artmator.model.images import PaintingImageError
from artmator.model.weights import WeightsError
from artmator.pipeline.errors import DETERMINISTIC, TRANSIENT, classify, is_transient, with_retries

SIGNED = "https://bucket.s3.amazonaws.com/p.png?X-Amz-Signature=abc123secret&X-Amz-Credential=AKIAABCDEFGHIJKLMNOP"


@pytest.mark.parametrize("exc, kind", [
    (PaintingImageError("empty", "s3://b/p.png", "the file is empty (0 bytes)"), "image"),
    (ExpressionError("unknown expression 'smirk'"), "expression"),
    (WeightsError("generator: s3://b/g.pth has the wrong shape"), "weights"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom"),
    (RuntimeError("CUDA error: out of memory"), "oom"),
    (FileNotFoundError("s3://b/out/x"), "storage"),
    (ConnectionError("connection reset by peer"), "storage"),
    (TimeoutError("read timed out"), "storage"),
    (ValueError("expression name 'a/b' is not a safe file name"), "config"),
    (RuntimeError("Given input size: (192x1x1)"), "internal"),
    (KeyError("lpips_ref"), "internal"),
])
def test_classify_kinds(exc, kind):
    got, message = classify(exc)
    assert got == kind
    assert message
    assert is_transient(exc) == (kind in TRANSIENT)
    assert (kind in DETERMINISTIC) != (kind in TRANSIENT) or kind == "internal"


def test_classify_messages_are_specific_and_carry_no_credentials():
    kind, message = classify(PaintingImageError("truncated", SIGNED, "the PNG data ends early"))
    assert kind == "image" and message.startswith("truncated: ") and "ends early" in message
    assert "abc123secret" not in message and "AKIAABCDEFGHIJKLMNOP" not in message
    assert "bucket.s3.amazonaws.com/p.png" in message
    kind, message = classify(OSError(f"403 Forbidden for {SIGNED} with key AKIAABCDEFGHIJKLMNOP"))
    assert kind == "storage" and "abc123secret" not in message and "AKIAABCDEFGHIJKLMNOP" not in message
    assert classify(RuntimeError("boom"))[1] == "RuntimeError: boom"


class Flaky:
    def __init__(self, failures: list[BaseException], value="ok"):
        self.failures, self.value, self.calls = list(failures), value, 0

    def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.value


def test_transient_errors_are_retried_with_growing_backoff():
    sleeps: list[float] = []
    fn = Flaky([ConnectionError("reset"), OSError("503 Slow Down"), TimeoutError("timed out")])
    assert with_retries(fn, attempts=4, base_delay_s=1.0, max_delay_s=100.0, sleep=sleeps.append) == "ok"
    assert fn.calls == 4 and len(sleeps) == 3
    for i, s in enumerate(sleeps):                       # base * 2^i, jittered by a factor in [0.5, 1.5)
        assert 0.5 * 2 ** i <= s < 1.5 * 2 ** i, sleeps


def test_backoff_is_capped_and_oom_is_retried():
    sleeps: list[float] = []
    fn = Flaky([torch.OutOfMemoryError("CUDA out of memory")] * 5)
    assert with_retries(fn, attempts=6, base_delay_s=10.0, max_delay_s=15.0, sleep=sleeps.append) == "ok"
    assert len(sleeps) == 5 and all(s < 15.0 * 1.5 for s in sleeps) and max(sleeps) >= 15.0 * 0.5


def test_transient_error_gives_up_after_the_last_attempt():
    sleeps: list[float] = []
    fn = Flaky([ConnectionError(f"reset {i}") for i in range(5)])
    with pytest.raises(ConnectionError, match="reset 2"):
        with_retries(fn, attempts=3, sleep=sleeps.append)
    assert fn.calls == 3 and len(sleeps) == 2


@pytest.mark.parametrize("exc", [PaintingImageError("not_an_image", "x.png", "not an image"),
                                 ExpressionError("bad"), WeightsError("bad"), ValueError("bad"),
                                 RuntimeError("bug")])
def test_deterministic_errors_are_not_retried(exc):
    sleeps: list[float] = []
    fn = Flaky([exc, exc])
    with pytest.raises(type(exc)):
        with_retries(fn, attempts=4, sleep=sleeps.append)
    assert fn.calls == 1 and sleeps == []
