"""The bad-input catalogue (docs/bad-inputs.md): one test per case, each beside a good painting.

Row, image and URI cases go through the real planning and actor code (`plan` + ONE `tune_and_commit` batch holding
the bad painting and the good one, then the report), without Ray: Ray adds nothing per input and costs seconds.
They assert the bad painting's exact status / error_kind / message fragment, that it left no folder behind, and
that the good painting is committed, verifies, and has the very delta it gets when tuned alone.

Manifest-level, weights and config cases stop the run before any work: they go through `pipeline.job.run` (or the
`artmator run` command) against an output folder where the good painting was committed earlier, and assert the
error, that nothing was tuned or reported, and that the good painting's commit is untouched.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from artmator.model.delta import DeltaError, apply_delta, decode_delta
from artmator.pipeline.errors import classify
from artmator.pipeline.job import RunConfig, run
from artmator.pipeline.manifest import CROP_TYPE
from artmator.pipeline.settings import BackboneSettings
from artmator.pipeline.storage import OutputStore
from tests.reliability.conftest import GOOD_ID, good_row, inline_run, manifest_table, markers, write_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "bad-inputs.md"


@dataclass(frozen=True)
class Case:
    """One catalogue entry. `status` is the bad input's report status ('done', 'failed', 'invalid') or, for inputs
    that stop the whole run, 'refused'. `rows(folder)` returns the bad manifest rows (row/image cases)."""

    name: str
    group: str            # row | image | manifest | weights | config
    input: str            # what the input is, for the catalogue
    status: str
    kind: str             # error_kind ('' when done; for 'refused': the exception / exit the user sees)
    fragment: str         # a piece of the message the user sees
    rows: Callable[[Path], list[dict]] | None = None
    types: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------- images

def _rgb(size=(64, 64), seed=5) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    face = ((xx - size[0] / 2) ** 2 + (yy - size[1] / 2) ** 2 < (min(size) / 3) ** 2)[..., None]
    img = np.where(face, [200, 150, 120], [40, 60, 90]) + rng.integers(0, 30, (size[1], size[0], 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _save(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_with_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but whose data is a few bytes: sizes come from the header."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _palette_with_transparency() -> bytes:
    p = _rgb().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return _save(p, "PNG", transparency=0)


def _animated_gif() -> bytes:
    a = _rgb()
    return _save(a, "GIF", save_all=True, append_images=[a.rotate(90), a.rotate(180)], duration=100, loop=0)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6                                             # "rotate 90 CW to display"
    return _save(_rgb((64, 48)), "JPEG", exif=exif.tobytes())


def _16_bit() -> bytes:
    grey = np.asarray(_rgb().convert("L"), np.uint16) * 257
    image = Image.fromarray(grey)
    assert image.mode.startswith("I;16")
    return _save(image, "PNG")


IMAGE_BYTES: dict[str, Callable[[], bytes]] = {
    "zero-bytes.png": lambda: b"",
    "truncated.jpg": lambda: (lambda d: d[: len(d) // 2])(_save(_rgb(), "JPEG")),
    "truncated.png": lambda: (lambda d: d[: len(d) // 2])(_save(_rgb(), "PNG")),
    "noise.png": lambda: np.random.default_rng(3).integers(0, 256, 700, dtype=np.uint8).tobytes(),
    "bomb.png": lambda: _save(Image.new("L", (8000, 8000)), "PNG"),           # 64 Mpx in ~60 kB
    "one-pixel.png": lambda: _save(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"),
    "huge-header.png": lambda: _png_with_header(20_000, 20_000),
    "cmyk.jpg": lambda: _save(_rgb().convert("CMYK"), "JPEG"),
    "grey16.png": _16_bit,
    "palette-trns.png": _palette_with_transparency,
    "animated.gif": _animated_gif,
    "exif-rotated.jpg": _exif_rotated,
    "drawing.png": lambda: (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" '
                            b'onload="alert(1)"><script>alert(2)</script></svg>'),
    "page.jpg": lambda: b"<!DOCTYPE html><html><body><script>alert(1)</script>Access denied</body></html>",
    "document.jpg": lambda: b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n",
}


def _image_row(name: str, pid: str) -> Callable[[Path], list[dict]]:
    def rows(folder: Path) -> list[dict]:
        (folder / name).write_bytes(IMAGE_BYTES[name]())
        return [{"painting_id": pid, "image_uri": name, "yaw_deg": 10.0, "pitch_deg": 0.0}]
    return rows


def _row(**values) -> Callable[[Path], list[dict]]:
    """A bad row over a valid image (so only the named problem can fail it)."""
    def rows(folder: Path) -> list[dict]:
        (folder / "valid.png").write_bytes(_save(_rgb(), "PNG"))
        return [{"painting_id": "bad-row", "image_uri": "valid.png", "yaw_deg": 0.0, "pitch_deg": 0.0, **values}]
    return rows


def _twins(folder: Path) -> list[dict]:
    (folder / "valid.png").write_bytes(_save(_rgb(), "PNG"))
    return [{"painting_id": "twin", "image_uri": "valid.png", "yaw_deg": 0.0, "pitch_deg": 0.0}] * 2


def _dir_image(folder: Path) -> list[dict]:
    (folder / "a-folder.png").mkdir()
    return [{"painting_id": "bad-row", "image_uri": "a-folder.png", "yaw_deg": 0.0, "pitch_deg": 0.0}]


def _crop_outside(folder: Path) -> list[dict]:
    (folder / "valid.png").write_bytes(_save(_rgb(), "PNG"))
    return [{"painting_id": "bad-row", "image_uri": "valid.png", "yaw_deg": 0.0, "pitch_deg": 0.0,
             "crop": {"x": 40, "y": 40, "w": 60, "h": 60}}]


ROW = "row"
IMG = "image"
CASES: list[Case] = [
    # ---- manifest rows: the row is reported `invalid` (error_kind manifest), every other row goes on
    Case("extra-columns", ROW, "unknown columns `inventory_no`, `notes` (kept as pass-through extras)", "done", "", "",
         _row(inventory_no="INV-1", notes="<b>hi</b>")),
    Case("duplicate-id", ROW, "two rows with painting_id `twin`", "invalid", "manifest", "duplicate painting_id",
         _twins),
    Case("id-slash", ROW, "painting_id `a/b`", "invalid", "manifest", "contains a path separator",
         _row(painting_id="a/b")),
    Case("id-parent-traversal", ROW, "painting_id `../../etc/cron.d/x`", "invalid", "manifest",
         "contains a path separator", _row(painting_id="../../etc/cron.d/x")),
    Case("id-dotdot", ROW, "painting_id `..`", "invalid", "manifest", "names a directory", _row(painting_id="..")),
    Case("id-nul", ROW, "painting_id `a<NUL>b`", "invalid", "manifest", "contains a NUL or control character",
         _row(painting_id="a\x00b")),
    Case("id-absolute", ROW, "painting_id `/etc/passwd`", "invalid", "manifest", "looks like an absolute path",
         _row(painting_id="/etc/passwd")),
    Case("id-backslash", ROW, "painting_id `..\\..\\x`", "invalid", "manifest", "contains a path separator",
         _row(painting_id="..\\..\\x")),
    Case("yaw-nan", ROW, "yaw_deg NaN", "invalid", "manifest", "yaw_deg must be a finite number, got nan",
         _row(yaw_deg=float("nan"))),
    Case("pitch-inf", ROW, "pitch_deg +inf", "invalid", "manifest", "pitch_deg must be a finite number, got inf",
         _row(pitch_deg=float("inf"))),
    Case("yaw-out-of-range", ROW, "yaw_deg 500", "invalid", "manifest", "yaw_deg 500.0 is outside [-90, 90] degrees",
         _row(yaw_deg=500.0)),
    Case("pitch-out-of-range", ROW, "pitch_deg -75", "invalid", "manifest",
         "pitch_deg -75.0 is outside [-60, 60] degrees", _row(pitch_deg=-75.0)),
    Case("half-pose", ROW, "yaw_deg given, pitch_deg null", "invalid", "manifest",
         "pitch_deg is null but the other angle is given", _row(pitch_deg=None)),
    Case("source-url-javascript", ROW, "source_url `javascript:alert(1)`", "invalid", "manifest",
         "source_url must be an http(s) URI", _row(source_url="javascript:alert(1)")),
    Case("uri-unknown-protocol", ROW, "image_uri `nosuchproto://bucket/x.png`", "invalid", "manifest",
         "which fsspec does not know", _row(image_uri="nosuchproto://bucket/x.png")),
    Case("uri-with-password", ROW, "image_uri `s3://user:hunter2@bucket/x.png`", "invalid", "manifest",
         "embeds a password", _row(image_uri="s3://user:hunter2@bucket/x.png")),
    Case("uri-missing-file", ROW, "image_uri of a file that does not exist", "failed", "image", "not_found:",
         _row(image_uri="no-such-file.png")),
    Case("uri-unreachable-host", ROW, "image_uri `http://127.0.0.1:9/x.png` (connection refused)", "failed",
         "storage", "could not be reached", _row(image_uri="http://127.0.0.1:9/x.png")),
    Case("uri-is-directory", ROW, "image_uri naming a folder", "failed", "image", "unreadable:", _dir_image),
    Case("crop-outside-image", ROW, "crop (40, 40, 60, 60) on a 64x64 image", "failed", "image",
         "bad_crop:", _crop_outside, {"crop": CROP_TYPE}),
    # ---- image files: the painting fails with error_kind image and the file's kind; supported oddities are done
    Case("zero-bytes", IMG, "0-byte `.png`", "failed", "image", "empty:", _image_row("zero-bytes.png", "bad-img")),
    Case("truncated-jpeg", IMG, "JPEG cut in half", "failed", "image", "truncated:",
         _image_row("truncated.jpg", "bad-img")),
    Case("truncated-png", IMG, "PNG cut in half", "failed", "image", "truncated:",
         _image_row("truncated.png", "bad-img")),
    Case("not-an-image", IMG, "700 random bytes named `.png`", "failed", "image", "not_an_image:",
         _image_row("noise.png", "bad-img")),
    Case("decompression-bomb", IMG, "8000x8000 PNG of zeros (64 Mpx in ~60 kB)", "failed", "image",
         "too_large:", _image_row("bomb.png", "bad-img")),
    Case("one-pixel", IMG, "1x1 PNG", "failed", "image", "too_small:", _image_row("one-pixel.png", "bad-img")),
    Case("huge-header", IMG, "PNG header claiming 20,000x20,000", "failed", "image", "too_large:",
         _image_row("huge-header.png", "bad-img")),
    Case("svg-as-png", IMG, "SVG with onload/script named `.png`", "failed", "image", "an SVG (vector) drawing",
         _image_row("drawing.png", "bad-img")),
    Case("html-as-jpg", IMG, "HTML page with a script named `.jpg`", "failed", "image", "an HTML page",
         _image_row("page.jpg", "bad-img")),
    Case("pdf-as-jpg", IMG, "PDF named `.jpg`", "failed", "image", "a PDF document",
         _image_row("document.jpg", "bad-img")),
    Case("cmyk-jpeg", IMG, "CMYK JPEG (supported)", "done", "", "", _image_row("cmyk.jpg", "odd-img")),
    Case("16-bit-png", IMG, "16-bit greyscale PNG (supported)", "done", "", "", _image_row("grey16.png", "odd-img")),
    Case("palette-transparency", IMG, "palette PNG with a transparent index (supported)", "done", "", "",
         _image_row("palette-trns.png", "odd-img")),
    Case("animated-gif", IMG, "3-frame animated GIF (supported: first frame)", "done", "", "",
         _image_row("animated.gif", "odd-img")),
    Case("exif-rotated", IMG, "JPEG with EXIF orientation 6 (supported: rotated upright)", "done", "", "",
         _image_row("exif-rotated.jpg", "odd-img")),
    # ---- whole manifest: the run stops before any work (ValueError / `artmator run` exit 1)
    Case("missing-column", "manifest", "no `image_uri` column", "refused", "ValueError",
         "required column 'image_uri' is missing"),
    Case("wrong-type-pose", "manifest", "`yaw_deg` column of strings", "refused", "ValueError",
         "column 'yaw_deg' has type string; expected numbers"),
    Case("wrong-type-id", "manifest", "`painting_id` column of integers", "refused", "ValueError",
         "column 'painting_id' has type int64; expected strings"),
    Case("empty-manifest", "manifest", "Parquet file with the schema and 0 rows", "refused", "ValueError",
         "has no rows"),
    Case("not-parquet", "manifest", "a CSV file named `manifest.parquet`", "refused", "ValueError",
         "is not a readable Parquet file"),
    Case("manifest-missing", "manifest", "manifest path that does not exist", "refused", "ValueError",
         "does not exist"),
    # ---- weights: the run stops before any work with WeightsError (error_kind weights)
    Case("weights-wrong-shape", "weights", "generator safetensors with one tensor (3, 3) instead of (32, 3)",
         "refused", "weights", "shape mismatch [siren.network.0.layer.weight: file has (3, 3)"),
    Case("weights-missing-key", "weights", "generator safetensors without `siren.network.0.layer.weight`",
         "refused", "weights", "missing keys [siren.network.0.layer.weight]"),
    Case("weights-truncated", "weights", "generator `.pth` cut in half", "refused", "weights",
         "is truncated or not a torch checkpoint"),
    Case("weights-pickled-code", "weights", "`.pth` whose pickle calls `os.system`", "refused", "weights",
         "was refused: it is a pickle that would construct objects or run code"),
    Case("delta-other-base", "weights", "a committed delta applied to a generator with other weights", "refused",
         "weights", "delta was tuned from generator"),
    # ---- configuration
    Case("negative-steps", "config", "`artmator run --stage1-steps -1`", "refused", "exit 2",
         "Invalid value for '--stage1-steps'"),
    Case("unknown-preset", "config", "`BackboneSettings(preset=\"nope\")`", "refused", "ValueError",
         "unknown preset 'nope'"),
    Case("unwritable-output", "config", "`--out` below a regular file", "refused", "exit 1",
         "storage error: NotADirectoryError"),
]
BY_NAME = {c.name: c for c in CASES}


# ----------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def baseline(tmp_path_factory, rel_settings, rel_models):
    """The good painting tuned and committed alone: its delta is what every case must leave unchanged."""
    folder = tmp_path_factory.mktemp("baseline")
    manifest = write_table(folder / "manifest.parquet", manifest_table([good_row(folder)]))
    out = folder / "out"
    rows, store = inline_run(manifest, str(out), rel_settings, rel_models, run_id="baseline")
    assert rows[GOOD_ID][0]["status"] == "done", rows
    return {"out": out, "delta": _committed_delta(store)}


def _same_delta(a, b) -> bool:
    return (a.metadata == b.metadata and a.tensors.keys() == b.tensors.keys()
            and all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
            and all(torch.equal(a.metadata.latent[k], b.metadata.latent[k]) for k in a.metadata.latent))


def _committed_delta(store: OutputStore):
    """The good painting's delta as its current commit lists it (read and verified through the layout)."""
    return decode_delta(store.read_file(GOOD_ID, "delta.safetensors"))


def _assert_good_committed(store: OutputStore, out: Path, baseline, alone: bool) -> None:
    """Committed and intact; when the bad input never reached tuning (`alone`), bit-identical to the baseline.

    (A painting tuned in a batch of two draws other stage-2 views than alone, so only `alone` compares tensors.)
    """
    assert store.is_committed(GOOD_ID) and store.verify(GOOD_ID) == []
    delta = _committed_delta(store)
    if alone:
        assert _same_delta(delta, baseline["delta"]), "the good painting's result changed beside the bad input"
    assert all(torch.isfinite(t.float()).all() for t in delta.tensors.values())


def _prepared_out(tmp_path: Path, baseline) -> tuple[Path, dict[str, bytes]]:
    out = tmp_path / "out"
    shutil.copytree(baseline["out"], out)
    return out, markers(out)


def _assert_nothing_ran(out: Path, before: dict[str, bytes]) -> None:
    assert markers(out) == before, "a refused run touched committed paintings"
    assert sorted(p.name for p in (out / "paintings").iterdir()) == [GOOD_ID]
    assert [p.parent.name for p in out.glob("runs/*/attempts")] == ["baseline"], "a refused run started tuning"
    assert [p.parent.name for p in out.glob("runs/*/report.parquet")] == ["baseline"]
    store = OutputStore(str(out))
    assert store.verify(GOOD_ID) == [] and store.partial_paintings() == []


# -------------------------------------------------------------------------------------------------- tests

ROW_CASES = [c for c in CASES if c.group in (ROW, IMG)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", ROW_CASES, ids=[c.name for c in ROW_CASES])
def test_bad_painting_beside_a_good_one(case: Case, tmp_path, rel_settings, rel_models, baseline):
    bad = case.rows(tmp_path)
    manifest = write_table(tmp_path / "manifest.parquet",
                           manifest_table([good_row(tmp_path), *bad], case.types))
    out = tmp_path / "out"
    rows, store = inline_run(manifest, str(out), rel_settings, rel_models)

    bad_ids = {r["painting_id"] for r in bad}
    assert set(rows) == {GOOD_ID, *bad_ids}
    for pid in bad_ids:
        for r in rows[pid]:
            assert (r["status"], r["error_kind"] or "") == (case.status, case.kind), r
            if case.fragment:
                assert case.fragment in r["message"], r["message"]
    assert len(rows[GOOD_ID]) == 1 and rows[GOOD_ID][0]["status"] == "done", rows[GOOD_ID]
    _assert_good_committed(store, out, baseline, alone=case.status != "done")

    folders = sorted(p.name for p in (out / "paintings").iterdir())
    if case.status == "done":
        assert folders == sorted({GOOD_ID, *bad_ids}) and all(store.verify(pid) == [] for pid in bad_ids)
    else:
        assert folders == [GOOD_ID], f"a failed input left a folder behind: {folders}"
    # a path-like id never reached the filesystem anywhere (neither in nor beside the output)
    assert sorted(p.name for p in out.iterdir()) == ["claims", "commits", "paintings", "runs"]
    assert store.partial_paintings() == []


MANIFEST_CASES = [c for c in CASES if c.group == "manifest"]


def _bad_manifest(name: str, folder: Path) -> str:
    good = good_row(folder)
    path = folder / "manifest.parquet"
    if name == "missing-column":
        return write_table(path, manifest_table([good]).drop_columns(["image_uri"]))
    if name == "wrong-type-pose":
        return write_table(path, manifest_table([{**good, "yaw_deg": "0"}], {"yaw_deg": pa.string()}))
    if name == "wrong-type-id":
        return write_table(path, manifest_table([{**good, "painting_id": 1}], {"painting_id": pa.int64()}))
    if name == "empty-manifest":
        return write_table(path, manifest_table([good]).slice(0, 0))
    if name == "not-parquet":
        path.write_text("painting_id,image_uri,yaw_deg,pitch_deg\ngood-1,good-1.png,0,0\n")
        return str(path)
    if name == "manifest-missing":
        return str(folder / "no-such-manifest.parquet")
    raise AssertionError(name)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", MANIFEST_CASES, ids=[c.name for c in MANIFEST_CASES])
def test_unusable_manifest_stops_the_run_before_work(case: Case, tmp_path, rel_settings, baseline):
    out, before = _prepared_out(tmp_path, baseline)
    manifest = _bad_manifest(case.name, tmp_path)
    with pytest.raises(ValueError) as info:
        run(RunConfig(manifest_uri=manifest, out_uri=str(out), settings=rel_settings, run_id="refused"))
    assert case.fragment in str(info.value), str(info.value)
    _assert_nothing_ran(out, before)


@pytest.mark.timeout(120)
def test_unusable_manifest_through_the_command_is_one_clear_line(tmp_path, baseline):
    """`artmator run` on a non-Parquet manifest: exit 1, one `Error:` line naming the file, no traceback, no work."""
    from artmator.pipeline.cli import main

    out, before = _prepared_out(tmp_path, baseline)
    manifest = _bad_manifest("not-parquet", tmp_path)
    result = CliRunner().invoke(main, ["run", manifest, "--out", str(out), "--no-gallery", "--no-head-prior",
                                       "--resolution", "32"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: the manifest cannot be used") or "Error: manifest" in result.output, \
        result.output
    assert BY_NAME["not-parquet"].fragment in result.output and "Traceback" not in result.output
    _assert_nothing_ran(out, before)


WEIGHT_CASES = [c for c in CASES if c.group == "weights" and c.name != "delta-other-base"]


class _Payload:
    """Pickles to a call of os.system: what a hostile .pth carries."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _bad_weights(name: str, folder: Path, rel_models) -> tuple[str, Path]:
    from safetensors.torch import save_file

    state = {k: v.detach().clone() for k, v in rel_models.backbone.part("generator").state_dict().items()}
    first = "siren.network.0.layer.weight"
    side_effect = folder / "PWNED"
    if name == "weights-wrong-shape":
        save_file({**state, first: torch.zeros(3, 3)}, folder / "g.safetensors")
        return str(folder / "g.safetensors"), side_effect
    if name == "weights-missing-key":
        save_file({k: v for k, v in state.items() if k != first}, folder / "g.safetensors")
        return str(folder / "g.safetensors"), side_effect
    if name == "weights-truncated":
        buf = io.BytesIO()
        torch.save(state, buf)
        (folder / "g.pth").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        return str(folder / "g.pth"), side_effect
    if name == "weights-pickled-code":
        torch.save({"state_dict": _Payload(f"touch {side_effect}")}, folder / "g.pth")
        return str(folder / "g.pth"), side_effect
    raise AssertionError(name)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", WEIGHT_CASES, ids=[c.name for c in WEIGHT_CASES])
def test_bad_generator_weights_stop_the_run_before_work(case: Case, tmp_path, rel_settings, rel_models, baseline):
    from artmator.model.weights import WeightsError

    out, before = _prepared_out(tmp_path, baseline)
    manifest = write_table(tmp_path / "manifest.parquet", manifest_table([good_row(tmp_path)]))
    weights, side_effect = _bad_weights(case.name, tmp_path, rel_models)
    settings = replace(rel_settings, backbone=BackboneSettings(preset="tiny", weights=(("generator", weights),),
                                                               head_prior=False))
    with pytest.raises(WeightsError) as info:
        run(RunConfig(manifest_uri=manifest, out_uri=str(out), settings=settings, run_id="refused"))
    assert case.fragment in str(info.value), str(info.value)
    assert classify(info.value)[0] == case.kind
    assert not side_effect.exists(), "the pickle ran code"
    _assert_nothing_ran(out, before)


@pytest.mark.timeout(60)
def test_delta_other_base(baseline, rel_models):
    from artmator.model import load_backbone

    case = BY_NAME["delta-other-base"]
    delta = baseline["delta"]
    other = load_backbone("tiny", seed=1)                                     # same preset, other weights
    with pytest.raises(DeltaError) as info:
        apply_delta(other, delta)
    assert case.fragment in str(info.value)
    assert classify(info.value)[0] == case.kind
    tuned = apply_delta(rel_models.backbone, delta)                           # the good delta on its own base
    assert tuned is not None


@pytest.mark.timeout(60)
def test_negative_steps(tmp_path, baseline):
    from artmator.pipeline.cli import main

    case = BY_NAME["negative-steps"]
    out, before = _prepared_out(tmp_path, baseline)
    manifest = write_table(tmp_path / "manifest.parquet", manifest_table([good_row(tmp_path)]))
    result = CliRunner().invoke(main, ["run", manifest, "--out", str(out), "--stage1-steps", "-1", "--no-gallery"])
    assert result.exit_code == 2 and case.fragment in result.output, result.output
    _assert_nothing_ran(out, before)


@pytest.mark.timeout(60)
def test_unknown_preset(tmp_path, rel_settings, baseline):
    case = BY_NAME["unknown-preset"]
    out, before = _prepared_out(tmp_path, baseline)
    manifest = write_table(tmp_path / "manifest.parquet", manifest_table([good_row(tmp_path)]))
    with pytest.raises(ValueError, match=re.escape(case.fragment)):      # refused where the settings are made
        settings = replace(rel_settings, backbone=BackboneSettings(preset="nope", head_prior=False))
        run(RunConfig(manifest_uri=manifest, out_uri=str(out), settings=settings, run_id="refused"))
    _assert_nothing_ran(out, before)


@pytest.mark.timeout(60)
def test_unwritable_output(tmp_path):
    from artmator.pipeline.cli import main

    case = BY_NAME["unwritable-output"]
    manifest = write_table(tmp_path / "manifest.parquet", manifest_table([good_row(tmp_path)]))
    (tmp_path / "a-file").write_text("not a folder")
    result = CliRunner().invoke(main, ["run", manifest, "--out", str(tmp_path / "a-file" / "out"), "--no-gallery",
                                       "--no-head-prior", "--resolution", "32"])
    assert result.exit_code == 1, result.output
    assert case.fragment in result.output and "Traceback" not in result.output, result.output
    assert "rerun to resume" in result.output
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_catalogue_document_lists_every_case():
    """docs/bad-inputs.md is the table of CASES: same names, statuses, kinds and fragments, nothing missing."""
    table = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`") and cells[0] != "`case`":
            table[cells[0].strip("`")] = (cells[3].strip("`"), cells[4].strip("`"), cells[5].strip("`"))
    assert len(CASES) >= 30
    assert set(table) == set(BY_NAME), sorted(set(table) ^ set(BY_NAME))
    for case in CASES:
        kind = case.kind or "—"
        fragment = case.fragment or "—"
        assert table[case.name] == (case.status, kind, fragment.replace("|", "\\|")), case.name
