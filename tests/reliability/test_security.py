"""No input can escape the output prefix, run code, script a visitor's browser, or leak a credential.

- Hostile ids: refused by `OutputStore` on its own, and, through a real Ray run, by the manifest check, with
  nothing written outside the output folder.
- Hostile `.pth` files (pickles that call os.system, exec, subprocess) never execute: neither through
  `load_backbone(weights=...)` nor through `artmator run --weights generator=...`.
- Gallery: XSS payloads in every metadata field of committed paintings and in the ids/messages of failed rows stay
  text in headless Chromium (no dialog, no script ran, the payload is shown literally).
- A run on S3 (moto) with a fake secret key and signed image URLs writes neither the secret nor the signature into
  any object, report, config, gallery file, log or console output.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from artmator.pipeline.job import RunConfig, run
from artmator.pipeline.layout import marker_name, Fingerprints
from artmator.pipeline.storage import OutputStore, StoreError
from tests.pipeline.ray_fixtures import png_bytes
from tests.reliability.conftest import ROOT, manifest_table, supervise, write_table

HOSTILE_IDS = ["../escape", "../../etc/passwd", "/abs/olute", "..", ".", "a\x00b", "..\\..\\win", "x/../../y",
               "C:\\Windows\\x", "<img src=x onerror=window.__pwned=9>", "a" * 200, "", " lead"]
TINY_RUN = ["--stage1-steps", "2", "--stage2-steps", "1", "--frames", "2", "--render-resolution", "32",
            "--resolution", "32", "--expressions", "happiness", "--no-head-prior", "--no-find-faces", "--no-face-metrics", "--actors", "1"]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ----------------------------------------------------------------------------------------------------- ids

@pytest.mark.parametrize("painting_id", HOSTILE_IDS, ids=[repr(i)[:24] for i in HOSTILE_IDS])
def test_output_store_refuses_ids_that_could_escape(tmp_path, painting_id):
    out = tmp_path / "deep" / "out"
    store = OutputStore(str(out))
    before = _tree(tmp_path)
    marker = {"run_id": "r1", "config_hash": "h"}
    for call in (lambda: store.write_painting(painting_id, {"a.txt": b"x"}, marker),
                 lambda: store.painting_dir(painting_id), lambda: store.commit_dir(painting_id),
                 lambda: store.read_marker(painting_id), lambda: store.verify(painting_id),
                 lambda: store.run_dir(painting_id), lambda: store.write_report(painting_id, pa.table({"a": [1]}))):
        with pytest.raises(StoreError):
            call()
    for rel in ("../x", "/etc/x", "a/../../x", "a\\b", "", "a//b"):
        with pytest.raises(StoreError):
            store.write_painting("fine-id", {rel: b"x"}, marker)
    assert _tree(tmp_path) == before, "a refused id or file name still created something"


def test_folders_with_unsafe_names_never_count_as_committed(tmp_path):
    """Folders that appeared under paintings/ or commits/ by other means (not through the store) are never
    trusted: an unsafe id, or a marker whose files point out of its painting."""
    store = OutputStore(str(tmp_path / "out"))
    store.write_painting("ok", {"a.txt": b"x"}, {"run_id": "r1", "config_hash": "h"})
    version = "v000001-abcdef"
    sneaky = tmp_path / "out" / "paintings" / "has space" / version
    sneaky.mkdir(parents=True)
    (sneaky / "a.txt").write_bytes(b"x")
    markers = tmp_path / "out" / "commits" / "has space"
    markers.mkdir(parents=True)
    (markers / marker_name(version, Fingerprints())).write_text(json.dumps(
        {"painting_id": "has space", "version": version, "run_id": "r1", "config_hash": "h",
         "files": {"a.txt": {"path": f"{version}/a.txt", "bytes": 1, "sha256": "0" * 64}}}))
    escape = tmp_path / "out" / "commits" / "escape"
    escape.mkdir()
    (escape / marker_name(version, Fingerprints())).write_text(json.dumps(
        {"painting_id": "escape", "version": version, "run_id": "r1", "config_hash": "h",
         "files": {"a.txt": {"path": f"{version}/../../ok/a.txt", "bytes": 1, "sha256": "0" * 64}}}))
    assert set(store.committed()) == {"ok"} and store.committed_ids() == {"ok", "escape"}
    assert store.read_commit("escape") is None


# ------------------------------------------------------------------------------------------- pickled code

class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _evil_files(folder: Path) -> tuple[list[Path], Path]:
    """.pth files whose unpickling would create `folder/PWNED` by several routes; returns (files, side effect)."""
    flag = folder / "PWNED"
    payloads = {
        "system.pth": _Reduce(os.system, (f"touch {flag}",)),
        "exec.pth": _Reduce(exec, (f"open({str(flag)!r}, 'w').write('x')",)),
        "popen.pth": _Reduce(subprocess.Popen, (["touch", str(flag)],)),
    }
    files = []
    for name, payload in payloads.items():
        torch.save({"state_dict": {"siren.network.0.layer.weight": payload}}, folder / name)
        files.append(folder / name)
    legacy = folder / "legacy.pth"                                   # pre-zip torch pickle format
    torch.save({"w": _Reduce(os.system, (f"touch {flag}",))}, legacy, _use_new_zipfile_serialization=False)
    files.append(legacy)
    return files, flag


@pytest.mark.timeout(60)
def test_pth_payload_never_runs_through_load_backbone(tmp_path):
    from artmator.model import WeightsError, load_backbone

    files, flag = _evil_files(tmp_path)
    for path in files:
        with pytest.raises(WeightsError, match="refused"):
            load_backbone("tiny", weights={"generator": str(path)})
        time.sleep(0.2)                                              # Popen would be asynchronous
        assert not flag.exists(), f"{path.name} ran code"


@pytest.mark.timeout(60)
def test_pth_payload_never_runs_through_artmator_run(tmp_path):
    from artmator.pipeline.cli import main

    files, flag = _evil_files(tmp_path)
    (tmp_path / "p.png").write_bytes(png_bytes(1))
    manifest = write_table(tmp_path / "m.parquet", manifest_table([
        {"painting_id": "p", "image_uri": "p.png", "yaw_deg": 0.0, "pitch_deg": 0.0}]))
    for path in files:
        result = CliRunner().invoke(main, ["run", manifest, "--out", str(tmp_path / "out"), "--no-gallery",
                                           "--weights", f"generator={path}", *TINY_RUN[:-2]])
        assert result.exit_code == 1, result.output
        assert "was refused" in result.output and "Traceback" not in result.output, result.output
        time.sleep(0.2)
        assert not flag.exists(), f"{path.name} ran code"
    assert not (tmp_path / "out" / "paintings").exists()


# -------------------------------------------------------------------------- hostile catalogue through a run

XSS = {
    "title": '</script><img src=x onerror="window.__pwned=1;alert(1)">',
    "artist": "<script>window.__pwned=2;alert(2)</script>",
    "date": '"><svg onload="window.__pwned=3">',
    "credit_line": "<iframe src=javascript:alert(4)></iframe> & <b>bold</b> {{7*7}} ${7*7}",
    "rights": 'https://example.org/"><script>window.__pwned=5</script>',
    "source_url": "https://example.org/x?a=1&b='onmouseover='window.__pwned=6'",
}
XSS_FILE = "<img src=x onerror=window.__pwned=7>"


@pytest.fixture(scope="module")
def hostile_run(ray_local, tmp_path_factory, rel_settings):
    """One real Ray run: two good paintings carrying XSS in every metadata field, plus hostile-id rows."""
    base = tmp_path_factory.mktemp("hostile")
    catalog = base / "catalog"
    catalog.mkdir()
    rows = []
    for i in range(2):
        (catalog / f"good{i}.png").write_bytes(png_bytes(20 + i))
        rows.append({"painting_id": f"xss-{i}", "image_uri": f"good{i}.png", "yaw_deg": 0.0, "pitch_deg": 0.0,
                     **XSS})
    (catalog / "any.png").write_bytes(png_bytes(30))
    for pid in HOSTILE_IDS:
        rows.append({"painting_id": pid, "image_uri": "any.png", "yaw_deg": 0.0, "pitch_deg": 0.0})
    # a failed painting whose report message (shown in the gallery's "Not available" list) carries markup
    rows.append({"painting_id": "missing-xss", "image_uri": f"{XSS_FILE}.png", "yaw_deg": 0.0, "pitch_deg": 0.0})
    manifest = write_table(catalog / "manifest.parquet", manifest_table(rows))
    out = base / "run" / "out"
    out.parent.mkdir()
    before = _tree(base)
    summary = run(RunConfig(manifest_uri=manifest, out_uri=str(out), settings=rel_settings, cpus_per_actor=1.0,
                            run_id="hostile"))
    return {"base": base, "out": out, "summary": summary, "before": before}


@pytest.mark.timeout(400)
def test_hostile_ids_through_a_run_stay_inside_the_output(hostile_run):
    base, out, summary = hostile_run["base"], hostile_run["out"], hostile_run["summary"]
    new = _tree(base) - hostile_run["before"]
    assert new and all(p == "run/out" or p.startswith("run/out/") for p in new), sorted(new)[:20]
    assert (summary.done, summary.failed) == (2, len(HOSTILE_IDS) + 1)
    report = pq.read_table(summary.report_path).to_pylist()
    for r in report:
        if r["painting_id"].startswith("xss-"):
            assert r["status"] == "done"
        elif r["painting_id"] == "missing-xss":
            assert (r["status"], r["error_kind"]) == ("failed", "image") and XSS_FILE in r["message"], r
        else:
            assert (r["status"], r["error_kind"]) == ("invalid", "manifest"), r
    assert sorted(p.name for p in (out / "paintings").iterdir()) == ["xss-0", "xss-1"]
    assert sorted(p.name for p in out.iterdir()) == ["claims", "commits", "paintings", "runs"]


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_gallery_keeps_every_payload_inert_in_chromium(hostile_run, browser):
    from artmator.pipeline.gallery.site import build_gallery

    out = hostile_run["out"]
    site = build_gallery(str(out), str(out.parent / "site"))
    assert sorted(site.paintings) == ["xss-0", "xss-1"]
    pages = [site.index_url] + [(out.parent / "site" / "p" / pid / "index.html").as_uri() for pid in site.paintings]
    for url in pages:
        page = browser.new_page()
        dialogs, requests = [], []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)
        page.wait_for_load_state("load")
        page.wait_for_timeout(300)
        for selector in ("img", "a", "iframe", "svg"):        # hover/click everything a visitor could
            for el in page.locator(selector).all()[:20]:
                try:
                    el.hover(timeout=500)
                except Exception:  # noqa: BLE001 - invisible elements cannot be hovered
                    pass
        assert dialogs == [], (url, dialogs)
        assert page.evaluate("typeof window.__pwned") == "undefined", url
        assert page.locator("iframe").count() == 0 and page.locator("script:not([src])").count() <= 2
        assert all(r.startswith("file://") for r in requests), requests
        text = page.inner_text("body")
        if "/p/" in url:
            for field in ("title", "artist", "credit_line"):
                assert XSS[field] in text, (url, field)     # shown literally, as text
        else:
            assert XSS["title"] in text
            assert XSS_FILE in text                              # a failure message, as text
        page.close()


# ----------------------------------------------------------------------------------- credentials and signatures

SECRET = "FAKEsecretKEY-d0-n0t-l3ak-9f2c7e"
SIGNATURE = "9e1f0c3b7a5d2e8f4c6b1a0d9e8f7c6b5a4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f"
CREDENTIAL = "AKIAFAKECREDENTIAL01"

CHILD = """
import sys, ray
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=True, _temp_dir=sys.argv[1])
from artmator.pipeline.cli import main
main(sys.argv[2:])
"""


def _texts(name: str, data: bytes) -> list[bytes]:
    """The bytes of an object, plus the decoded values when it is Parquet (its strings may be compressed)."""
    out = [data]
    if data[:4] == b"PAR1":
        table = pq.read_table(io.BytesIO(data))
        out.append(json.dumps(table.to_pylist(), default=str).encode())
    return out


def _leaks(name: str, data: bytes) -> list[str]:
    found = []
    for text in _texts(name, data):
        for needle in (SECRET, SIGNATURE):
            if needle.encode() in text:
                found.append(f"{name}: {needle[:12]}…")
    return found


@pytest.mark.timeout(420)
def test_secrets_and_signed_urls_are_never_written(s3_endpoint, tmp_path):
    import s3fs

    bucket = "leak-check"
    fs = s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": s3_endpoint})
    fs.mkdir(bucket)
    fs.pipe_file(f"{bucket}/catalog/good.png", png_bytes(7))
    query = (f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={CREDENTIAL}%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
             f"&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={SIGNATURE}")
    rows = [
        {"painting_id": "signed-good", "image_uri": f"{s3_endpoint}/{bucket}/catalog/good.png?{query}",
         "yaw_deg": 0.0, "pitch_deg": 0.0, "title": "signed"},
        {"painting_id": "signed-missing", "image_uri": f"{s3_endpoint}/{bucket}/catalog/missing.png?{query}",
         "yaw_deg": 0.0, "pitch_deg": 0.0},
        {"painting_id": "s3-missing", "image_uri": f"s3://{bucket}/catalog/missing.png", "yaw_deg": 0.0,
         "pitch_deg": 0.0},
    ]
    manifest_bytes = io.BytesIO()
    pq.write_table(manifest_table(rows), manifest_bytes)
    fs.pipe_file(f"{bucket}/catalog/manifest.parquet", manifest_bytes.getvalue())
    assert _leaks("manifest", manifest_bytes.getvalue()), "control: the check must find the signature in Parquet"

    ray_tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "AWS_SECRET_ACCESS_KEY",
                                                             "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN")}
    env.update({"AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")})
    args = ["run", f"s3://{bucket}/catalog/manifest.parquet", "--out", f"s3://{bucket}/out",
            "--endpoint-url", s3_endpoint, "--storage-option", f"key={CREDENTIAL}",
            "--storage-option", f"secret={SECRET}",
            "--storage-option", 'config_kwargs={"connect_timeout": 1, "retries": {"max_attempts": 1}}', *TINY_RUN]
    log_path = tmp_path / "console.log"
    with open(log_path, "wb") as log:
        child = subprocess.Popen([sys.executable, "-c", CHILD, ray_tmp, *args], cwd=tmp_path, env=env,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        code, family = supervise(child)
    try:
        console = log_path.read_bytes()
        assert code == 1, console.decode(errors="replace")[-3000:]      # two paintings fail: exit 1 by contract
        out = OutputStore(f"s3://{bucket}/out", {"key": "testing", "secret": "testing",
                                                  "client_kwargs": {"endpoint_url": s3_endpoint}})
        assert out.committed_ids() == {"signed-good"}
        report = out.read_reports().to_pylist()
        kinds = {r["painting_id"]: (r["status"], r["error_kind"]) for r in report}
        assert kinds == {"signed-good": ("done", None), "signed-missing": ("failed", "image"),
                         "s3-missing": ("failed", "image")}, kinds
        assert any("<redacted>" in (r["message"] or "") for r in report), report

        leaks: list[str] = []
        fs.invalidate_cache()
        objects = [p for p in fs.find(bucket) if not p.endswith("catalog/manifest.parquet")]
        assert any(p.endswith("/gallery/index.html") for p in objects) and any("runs/" in p for p in objects)
        for path in objects:                                            # every object the run wrote
            leaks += _leaks(path, fs.cat_file(path))
        leaks += _leaks("console", console)                            # stdout + stderr of `artmator run`
        local = [p for p in Path(ray_tmp).rglob("*") if p.is_file() and not p.is_symlink()]
        assert any(p.suffix in (".out", ".err", ".log") for p in local), "no Ray logs to check"
        for p in local + [p for p in tmp_path.rglob("*") if p.is_file()]:   # Ray logs; anything in the cwd
            try:
                leaks += _leaks(str(p), p.read_bytes())
            except OSError:
                continue
        assert leaks == [], leaks
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
