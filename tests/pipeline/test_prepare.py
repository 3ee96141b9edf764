"""`artmator prepare`: a catalog of whole paintings -> manifest of aligned, posed faces, report, review page.

Real components: the shipped face networks, local Ray, CSV and IIIF catalogs (IIIF served over HTTP on
127.0.0.1), real JPEG files."""
from __future__ import annotations

import csv
import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from artmator.pipeline.manifest import load_manifest, validate_manifest
from artmator.pipeline.prepare import PrepareConfig, prepare
from tests.pipeline.faces_fixtures import jpeg_bytes, no_face_painting, whole_painting

HOSTILE = "<script>window.__pwned=1</script> & \"quotes\""


def _write_csv(path: Path, rows: list[dict]) -> str:
    names = sorted({k for r in rows for k in r}, key=lambda k: (k != "painting_id", k != "image_uri", k))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=names)
        w.writeheader()
        w.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("catalog")
    (d / "img").mkdir()
    (d / "img" / "portrait.jpg").write_bytes(jpeg_bytes(whole_painting()))
    (d / "img" / "mirrored.jpg").write_bytes(jpeg_bytes(whole_painting(mirror=True)))
    (d / "img" / "small.jpg").write_bytes(jpeg_bytes(whole_painting(2000, 1500, scale=0.45, at=(1200, 700))))
    (d / "img" / "landscape.jpg").write_bytes(jpeg_bytes(no_face_painting()))
    (d / "img" / "broken.jpg").write_bytes(b"<html>not an image</html>")
    _write_csv(d / "catalog.csv", [
        {"painting_id": "portrait", "image_uri": "img/portrait.jpg", "title": HOSTILE, "accession_number": "A-1"},
        {"painting_id": "mirrored", "image_uri": "img/mirrored.jpg", "title": "Mirrored"},
        {"painting_id": "given-pose", "image_uri": "img/portrait.jpg", "yaw_deg": "12.5", "pitch_deg": "-3"},
        {"painting_id": "small", "image_uri": "img/small.jpg"},
        {"painting_id": "landscape", "image_uri": "img/landscape.jpg"},
        {"painting_id": "broken", "image_uri": "img/broken.jpg"},
        {"painting_id": "missing", "image_uri": "img/nowhere.jpg"},
        {"painting_id": "../evil", "image_uri": "img/portrait.jpg"},
    ])
    return d


@pytest.fixture(scope="module")
def prepared(ray_local, catalog, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "faces.parquet"
    # min_face_px between the small painting's face (~70 px) and the others (~150 px).
    summary = prepare(str(catalog / "catalog.csv"), str(out), PrepareConfig(min_face_px=110.0))
    return summary, out


@pytest.mark.timeout(300)
def test_prepare_writes_a_manifest_that_validates_with_aligned_posed_faces(prepared):
    summary, out = prepared
    tasks, problems = load_manifest(str(out))
    assert problems == [] and validate_manifest(pq.read_table(out)) == []
    by_id = {t.painting_id: t for t in tasks}
    assert set(by_id) == {"portrait", "mirrored", "given-pose"}
    p = by_id["portrait"]
    assert p.face_align is not None and p.crop is None and p.pose_source == "landmarks"
    # The astronaut's face sits at ~(330+225, 260+120) on the canvas; the training square is ~2x the face.
    assert abs(p.face_align.cx - 555) < 25 and abs(p.face_align.cy - 375) < 30
    assert 120 < p.face_align.size < 220 and abs(p.face_align.angle_deg) < 8
    assert 0.5 < p.face_confidence <= 1 and abs(p.yaw_deg) < 15 and abs(p.pitch_deg) < 25
    assert p.title == HOSTILE and p.extra.get("accession_number") == "A-1"          # pass-through kept
    m = by_id["mirrored"]
    # Mirrored painting: mirrored square (within the landmark net's own left/right asymmetry, ~2 % and ~2°).
    assert abs(m.face_align.cx - (1100 - p.face_align.cx)) < 0.05 * p.face_align.size
    assert abs(m.face_align.angle_deg + p.face_align.angle_deg) < 3.0
    g = by_id["given-pose"]
    assert (g.yaw_deg, g.pitch_deg, g.pose_source) == (12.5, -3.0, "given")        # given poses win
    assert summary.ok == 3 and summary.total == 8


@pytest.mark.timeout(300)
def test_prepare_report_names_each_rows_reason(prepared):
    summary, out = prepared
    report = {r["painting_id"]: r for r in pq.read_table(str(out).replace(".parquet", ".report.parquet")).to_pylist()}
    assert report["portrait"]["status"] == "ok" and report["portrait"]["faces_found"] == 1
    assert report["small"]["status"] == "face_too_small" and report["small"]["faces_found"] == 1
    assert report["landscape"]["status"] == "no_face" and report["landscape"]["faces_found"] == 0
    assert report["broken"]["status"] == "image" and "not_an_image" in report["broken"]["message"]
    assert report["missing"]["status"] == "image" and "not_found" in report["missing"]["message"]
    assert report["../evil"]["status"] == "manifest" and "painting_id" in report["../evil"]["message"]
    assert summary.by_status == {"face_too_small": 1, "image": 2, "manifest": 1, "no_face": 1, "ok": 3}


@pytest.mark.timeout(300)
def test_review_page_shows_boxes_landmarks_crops_and_escapes_titles(prepared):
    _, out = prepared
    page = Path(str(out).replace(".parquet", ".review.html"))
    html = page.read_text()
    run_id = pq.read_schema(out).metadata[b"artmator.prepare_run"].decode()
    assert pq.read_schema(str(out).replace(".parquet", ".report.parquet")).metadata[b"artmator.prepare_run"] == \
        run_id.encode() and f'content="{run_id}"' in html            # the three outputs name one run
    assets = page.with_name("faces.review")
    assert sorted(p.name for p in assets.iterdir()) == ["_claims", run_id]   # one run's images only
    assert (assets / run_id / "portrait.jpg").exists() and (assets / run_id / "portrait.face.jpg").exists()
    assert f'src="faces.review/{run_id}/portrait.face.jpg"' in html and "<polygon" in html
    assert html.count("<circle") >= 3 * 68
    assert "<script>window" not in html and "&lt;script&gt;" not in html or HOSTILE not in html
    assert html.index('id="landscape"') < html.index('id="portrait"')               # problems first
    assert "http://" not in html and "https://" not in html                          # no external request


@pytest.mark.timeout(300)
def test_all_faces_gives_one_row_per_face(ray_local, tmp_path):
    from PIL import Image

    two = whole_painting(1400, 800, at=(40, 150))
    two.paste(whole_painting(1400, 800, scale=0.9, at=(880, 150)).crop((880, 150, 1341, 611)), (880, 150))
    (tmp_path / "two.jpg").write_bytes(jpeg_bytes(two))
    cat = _write_csv(tmp_path / "c.csv", [{"painting_id": "pair", "image_uri": "two.jpg"}])
    summary = prepare(cat, str(tmp_path / "o.parquet"), PrepareConfig(all_faces=True))
    ids = pq.read_table(tmp_path / "o.parquet").column("painting_id").to_pylist()
    assert ids == ["pair-f1", "pair-f2"] and summary.ok == 2
    [run_dir] = [p for p in (tmp_path / "o.review").iterdir() if p.name != "_claims"]
    assert isinstance(Image.open(run_dir / "pair-f2.face.jpg").size, tuple)
    # A row's crop box limits the search: the second sitter, not the more prominent first one.
    right = pq.read_table(tmp_path / "o.parquet").to_pylist()[1]["face_align"]
    cat = _write_csv(tmp_path / "c2.csv", [{"painting_id": "pair", "image_uri": "two.jpg",
                                             "crop": "860,120,520,560"}])
    prepare(cat, str(tmp_path / "o2.parquet"), PrepareConfig())
    [row] = pq.read_table(tmp_path / "o2.parquet").to_pylist()
    assert row["crop"] is None and abs(row["face_align"]["cx"] - right["cx"]) < 3
    assert abs(row["face_align"]["cy"] - right["cy"]) < 3


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(300)
def test_prepare_reads_a_iiif_manifest_over_http_and_the_command_exits_zero(ray_local, http_root):
    from artmator.pipeline.cli import main

    root, base = http_root
    (root / "full.jpg").write_bytes(jpeg_bytes(whole_painting()))
    manifest = {
        "@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/manifest.json", "type": "Manifest",
        "label": {"en": ["Portrait of an astronaut"]},
        "metadata": [{"label": {"en": ["Artist"]}, "value": {"en": ["Unknown painter"]}}],
        "rights": "https://creativecommons.org/publicdomain/mark/1.0/",
        "items": [{"id": f"{base}/canvas/1", "type": "Canvas", "width": 1100, "height": 900, "items": [{
            "id": f"{base}/page/1", "type": "AnnotationPage", "items": [{
                "id": f"{base}/anno/1", "type": "Annotation", "motivation": "painting", "target": f"{base}/canvas/1",
                "body": {"id": f"{base}/full.jpg", "type": "Image", "format": "image/jpeg",
                         "width": 1100, "height": 900}}]}]}],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    out = root / "out" / "m.parquet"
    result = CliRunner().invoke(main, ["prepare", f"{base}/manifest.json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 ok" in result.output and "review:" in result.output
    [row] = pq.read_table(out).to_pylist()
    assert row["title"] == "Portrait of an astronaut" and row["artist"] == "Unknown painter"
    assert row["image_uri"] == f"{base}/full.jpg" and row["face_align"] is not None
    assert row["painting_id"].startswith("canvas-1") or row["painting_id"].endswith(row["painting_id"][-8:])
    # The catalog is unusable: the command fails with one clear line naming the URL.
    result = CliRunner().invoke(main, ["prepare", f"{base}/nowhere.json", "-o", str(root / "x.parquet")])
    assert result.exit_code != 0 and "nowhere.json" in result.output and "Traceback" not in result.output


@pytest.mark.s3
@pytest.mark.timeout(300)
def test_prepare_writes_its_outputs_to_s3(ray_local, catalog, s3_bucket, s3_options):
    import s3fs

    out = f"{s3_bucket}/prepared/faces.parquet"
    summary = prepare(str(catalog / "catalog.csv"), out, PrepareConfig(min_face_px=110.0), s3_options)
    assert summary.ok == 3
    fs = s3fs.S3FileSystem(**s3_options)
    tasks, problems = load_manifest(out, s3_options)
    assert problems == [] and {t.painting_id for t in tasks} == {"portrait", "mirrored", "given-pose"}
    names = {p.rsplit("/", 1)[-1] for p in fs.find(f"{s3_bucket}/prepared")}
    assert {"faces.report.parquet", "faces.review.html", "portrait.jpg", "portrait.face.jpg"} <= names
    assert "testing" not in fs.cat(f"{s3_bucket}/prepared/faces.review.html").decode()   # no credential leaks


@pytest.mark.timeout(120)
def test_a_second_prepare_on_one_output_is_refused_while_the_first_holds_it(catalog, tmp_path):
    from fsspec.implementations.local import LocalFileSystem

    from artmator.pipeline.claims import Claims
    from artmator.pipeline.cli import main
    from artmator.pipeline.prepare import PrepareBusy

    out = tmp_path / "faces.parquet"
    holder = Claims(LocalFileSystem(), str(tmp_path / "faces.review" / "_claims"), "prepare-other").take(
        "prepare", "prepare")
    with pytest.raises(PrepareBusy, match="run prepare-other \\(prepare\\)"):
        prepare(str(catalog / "catalog.csv"), str(out))
    result = CliRunner().invoke(main, ["prepare", str(catalog / "catalog.csv"), "-o", str(out)])
    assert result.exit_code != 0 and "being written by another prepare" in result.output
    assert not out.exists() and not (tmp_path / "faces.report.parquet").exists()
    holder.release()
