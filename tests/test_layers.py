"""One-way imports: generic code (the stages, deltas, faces, the pipeline) never imports a concrete backbone.

Backbones register themselves in `model.registry`; `model/__init__.py` is the composition root that imports the
shipped ones. A generic module importing `model.anifacegan` would make a second backbone a fork of the code.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKBONE_PACKAGES = ("artmator.model.anifacegan", "artmator.model.triplane")
# The composition root (it imports the shipped backbone packages so they register themselves).
BACKBONE_AWARE = {ROOT / "model" / "__init__.py"}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def generic_modules() -> list[Path]:
    packages = {name.rsplit(".", 1)[-1] for name in BACKBONE_PACKAGES}
    files = [p for p in (ROOT / "model").rglob("*.py") if not packages & set(p.relative_to(ROOT).parts)]
    files += list((ROOT / "pipeline").rglob("*.py"))
    return sorted(set(files) - BACKBONE_AWARE)


def test_generic_modules_import_no_backbone_package():
    offenders = {str(p.relative_to(ROOT)): m for p in generic_modules() for m in _imports(p)
                 if m.startswith(BACKBONE_PACKAGES)}
    assert offenders == {}, f"generic modules import a concrete backbone: {offenders}"


def test_the_check_sees_an_offending_import(tmp_path):
    for line in ("from artmator.model.anifacegan.film import MappingNetwork\n",
                 "import artmator.model.triplane.networks as n\n", "from artmator.model.triplane import PARTS\n"):
        bad = tmp_path / "bad.py"
        bad.write_text(line)
        assert any(m.startswith(BACKBONE_PACKAGES) for m in _imports(bad)), line
    assert len(generic_modules()) > 30
    assert not any("triplane" in p.parts or "anifacegan" in p.parts for p in generic_modules())


def test_backbone_packages_import_no_other_backbone_package():
    """Each backbone stands on the generic contract alone (a tri-plane port never borrows AniFaceGAN's code)."""
    for package in BACKBONE_PACKAGES:
        folder = ROOT / "model" / package.rsplit(".", 1)[-1]
        others = tuple(p for p in BACKBONE_PACKAGES if p != package)
        offenders = {str(f.relative_to(ROOT)): m for f in folder.rglob("*.py") for m in _imports(f)
                     if m.startswith(others)}
        assert offenders == {}, f"{package} imports another backbone: {offenders}"


def _repo_python_files() -> list[Path]:
    return sorted(p for folder in ("model", "pipeline", "tests", "bench", "scripts")
                  for p in (ROOT / folder).rglob("*.py"))


def test_nothing_imports_the_bare_folder_names():
    """The folders install as `artmator.model`/`artmator.pipeline`; a bare `import model` would only work from a
    checkout and would load a second copy of every module next to the installed one."""
    offenders = {str(p.relative_to(ROOT)): m for p in _repo_python_files() for m in _imports(p)
                 if m.split(".")[0] in ("model", "pipeline")}
    assert offenders == {}, f"bare top-level imports: {offenders}"


def test_every_package_folder_is_installed_under_the_namespace():
    import tomllib
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {"artmator." + ".".join(p.parent.relative_to(ROOT).parts)
               for folder in ("model", "pipeline") for p in (ROOT / folder).rglob("__init__.py")}
    assert declared == on_disk


def test_the_installed_package_is_importable_as_artmator():
    import artmator.model
    import artmator.pipeline
    assert Path(artmator.model.__file__).parent == ROOT / "model"
    assert Path(artmator.pipeline.__file__).parent == ROOT / "pipeline"
