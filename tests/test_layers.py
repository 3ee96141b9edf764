"""One-way imports: generic code (the stages, deltas, faces, the pipeline) never imports a concrete backbone.

Backbones register themselves in `model.registry`; `model/__init__.py` is the composition root that imports the
shipped ones. A generic module importing `model.anifacegan` would make a second backbone a fork of the code.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKBONE_PACKAGES = ("model.anifacegan",)
# The composition root, and the tiny preset's procedural demo head (an AniFaceGAN-specific fit).
BACKBONE_AWARE = {ROOT / "model" / "__init__.py", ROOT / "model" / "head_prior.py"}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def generic_modules() -> list[Path]:
    files = [p for p in (ROOT / "model").rglob("*.py") if "anifacegan" not in p.relative_to(ROOT).parts]
    files += list((ROOT / "pipeline").rglob("*.py"))
    return sorted(set(files) - BACKBONE_AWARE)


def test_generic_modules_import_no_backbone_package():
    offenders = {str(p.relative_to(ROOT)): m for p in generic_modules() for m in _imports(p)
                 if m.startswith(BACKBONE_PACKAGES)}
    assert offenders == {}, f"generic modules import a concrete backbone: {offenders}"


def test_the_check_sees_an_offending_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from model.anifacegan.film import MappingNetwork\n")
    assert any(m.startswith(BACKBONE_PACKAGES) for m in _imports(bad))
    assert len(generic_modules()) > 30
