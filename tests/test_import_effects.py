"""Importing artmator changes nothing outside it, and the job layer never loads the click layer.

Every module of `artmator.model` and `artmator.pipeline` is imported in a fresh interpreter, after the third-party
libraries they use (whose own import-time effects are theirs); then the process environment, torch's global
settings and RNG, open_clip's model registry and Pillow's globals must be as they were.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

SNAPSHOT = r"""
import importlib, json, os, pkgutil, sys
import torch, open_clip, lpips, fsspec, pyarrow, click, numpy
from PIL import Image, ImageFile
Image.init()   # Pillow's own lazy plugin loading (ImageConfig checks its formats against it): Pillow's, not ours

def snapshot():
    return {"env": dict(os.environ), "threads": torch.get_num_threads(), "dtype": str(torch.get_default_dtype()),
            "deterministic": torch.are_deterministic_algorithms_enabled(), "grad": torch.is_grad_enabled(),
            "matmul": torch.get_float32_matmul_precision(), "rng": torch.get_rng_state().tolist(),
            "open_clip": sorted(open_clip.list_models()), "max_pixels": Image.MAX_IMAGE_PIXELS,
            "truncated": ImageFile.LOAD_TRUNCATED_IMAGES, "pil_formats": sorted(Image.OPEN)}

before = snapshot()
import artmator.model, artmator.pipeline
modules = []
for package in (artmator.model, artmator.pipeline):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
        modules.append(info.name)
after = snapshot()
print(json.dumps({"modules": modules, "changed": sorted(k for k in before if before[k] != after[k]),
                  "env": sorted(set(before["env"].items()) ^ set(after["env"].items()))}))
"""


@pytest.mark.timeout(300)
def test_importing_every_module_has_no_global_side_effects():
    out = subprocess.run([sys.executable, "-c", SNAPSHOT], capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert "artmator.pipeline.cli" in report["modules"] and len(report["modules"]) > 40
    assert report["changed"] == [] and report["env"] == [], report


@pytest.mark.timeout(300)
def test_the_job_layer_does_not_load_the_click_layer():
    code = ("import sys, artmator.pipeline.job, artmator.pipeline.actor, artmator.pipeline.flow; "
            "print(sorted(m for m in sys.modules if m.startswith('artmator.pipeline.') and "
            "(m.endswith(('_command', '.options', '.cli', '.commands')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"
