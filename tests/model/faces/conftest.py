"""Shared setup of the face-net port tests: face-api's reference outputs, the pretrained nets (built once per
session), and the helpers the four net test files repeat (single-thread timing, strict-loading checks).

References (tests/fixtures/faces, rebuilt by the make_*_reference.py scripts there; Node is not needed here):
- detect_reference.npz + detect_inputs/*.png: face-api's detector and landmark outputs on whole images;
- describe_reference.npz: face crops and face-api's descriptors, expression logits/probabilities on them.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artmator.model.faces.descriptor import FaceDescriptorNet
from artmator.model.faces.detector import FaceDetector
from artmator.model.faces.expression import FaceExpressionNet
from artmator.model.faces.landmarks import FaceLandmark68Net
from artmator.model.faces.tfjs_ops import FaceWeightsError, TfjsNet

REF_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "faces"


@pytest.fixture(scope="session")
def detect_ref() -> dict[str, np.ndarray]:
    with np.load(REF_DIR / "detect_reference.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def detect_images() -> dict[str, np.ndarray]:
    """Every image of detect_inputs/, by name: HxWx3 uint8 RGB."""
    return {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in sorted((REF_DIR / "detect_inputs").glob("*.png"))}


@pytest.fixture(scope="session")
def describe_ref() -> dict:
    """describe_reference.npz with `names` (str list) and `crops` (list of HxWx3 uint8) unpacked."""
    with np.load(REF_DIR / "describe_reference.npz") as z:
        ref = {k: z[k] for k in z.files}
    ref["names"] = [str(n) for n in ref["names"]]
    ref["crops"] = [ref.pop(f"crop_{i}") for i in range(len(ref["names"]))]
    return ref


def _pretrained(name: str, net: type[TfjsNet]):
    """A session fixture `name`: `net.pretrained()`, built once for all the test files."""
    return pytest.fixture(scope="session", name=name)(lambda: net.pretrained())


detector = _pretrained("detector", FaceDetector)
landmark_net = _pretrained("landmark_net", FaceLandmark68Net)
descriptor_net = _pretrained("descriptor_net", FaceDescriptorNet)
expression_net = _pretrained("expression_net", FaceExpressionNet)


def best_single_thread_time(fn: Callable[[], object], repeats: int = 3,
                            clock: Callable[[], float] = time.perf_counter) -> float:
    """Best of `repeats` timings of `fn()` on one torch thread, after a warm-up call (oneDNN primitive creation).

    One thread, because a multi-threaded torch sharing a small CI box with another busy process slows down
    many-fold in OpenMP barriers, which says nothing about the code timed; one core is the stricter bound.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fn()
        best = float("inf")
        for _ in range(repeats):
            start = clock()
            fn()
            best = min(best, clock() - start)
    finally:
        torch.set_num_threads(threads)
    return best


def assert_strict_loading(load: Callable[[Mapping[str, torch.Tensor]], TfjsNet], weights: Mapping[str, torch.Tensor],
                          missing: str, extra: Mapping[str, torch.Tensor], wrong: Mapping[str, torch.Tensor],
                          parameters: int | None = None) -> None:
    """`load` (a net's strict TF.js loader) takes the shipped `weights` (whose tensors are exactly the net's
    `parameters`, when given), and refuses, naming the tensor: the map less `missing`, the map plus `extra`, and
    the map with each tensor of `wrong` (mis-shaped) in place of the shipped one."""
    net = load(weights)
    assert all(torch.isfinite(t).all() for t in net.state_dict().values())
    if parameters is not None:
        assert len(list(net.parameters())) == len(weights) == parameters
    assert_load_refused(load, weights, f"missing tensor '{missing}'$", drop=[missing])
    assert_load_refused(load, weights, re.escape(f"unexpected tensors (unused by the net): {sorted(extra)}"), put=extra)
    for name, t in wrong.items():
        expected = f"tensor {name!r} has shape {tuple(t.shape)}, expected {tuple(weights[name].shape)}"
        assert_load_refused(load, weights, re.escape(expected), put={name: t})


def assert_load_refused(load: Callable[[Mapping[str, torch.Tensor]], object], weights: Mapping[str, torch.Tensor],
                        match: str, drop: Iterable[str] = (), put: Mapping[str, torch.Tensor] | None = None) -> None:
    """`load` (a net's strict TF.js loader) refuses `weights` less the `drop` names, with `put` added or replaced,
    with a `FaceWeightsError` whose message matches `match`."""
    dropped = set(drop)
    broken = {k: v for k, v in weights.items() if k not in dropped} | dict(put or {})
    with pytest.raises(FaceWeightsError, match=match):
        load(broken)
