"""OUT and site on S3 (moto server on 127.0.0.1, fixtures from tests/pipeline/conftest.py): fsspec only."""
from __future__ import annotations

import json

import pytest

from artmator.pipeline.gallery import build_gallery

from .conftest import PaintingSpec, write_painting, write_report

pytestmark = pytest.mark.s3


@pytest.mark.timeout(120)
def test_gallery_on_s3(s3_options, s3_bucket, tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem(**s3_options)
    bucket = s3_bucket.removeprefix("s3://")
    local = tmp_path / "out"
    write_painting(local, PaintingSpec("s3-painting", {"title": "On S3"}, frames=6, size=32))
    write_painting(local, PaintingSpec("uncommitted", {"title": "No"}, frames=6, size=32, commit=False))
    write_report(local, "r1", [{"painting_id": "lost", "status": "failed", "error_kind": "oom", "message": ""}])
    fs.put(str(local) + "/", f"{bucket}/out/", recursive=True)

    def build():
        return build_gallery(f"{s3_bucket}/out", f"{s3_bucket}/site", storage_options=s3_options,
                             base_url="https://museum.example/site/")

    summary = build()
    assert summary.paintings == ["s3-painting"] and summary.encoded == ["s3-painting"]
    assert [u.painting_id for u in summary.unavailable] == ["lost"]
    assert summary.index_url == "https://museum.example/site/index.html"
    fs.invalidate_cache()
    [webm] = fs.glob(f"{bucket}/site/p/s3-painting/m-*/turntable.webm")      # one version of the media
    assert [p.rsplit("/", 1)[1] for p in fs.find(f"{bucket}/site/_claims")] == ["g000000000001.released"]
    assert fs.exists(f"{bucket}/site/index.html")
    assert not fs.exists(f"{bucket}/site/p/uncommitted")
    manifest = json.loads(fs.cat_file(f"{bucket}/site/p/s3-painting/manifest.json"))
    assert manifest["id"] == "https://museum.example/site/p/s3-painting/manifest.json"
    again = build()
    assert again.encoded == [] and again.reused == ["s3-painting"]
