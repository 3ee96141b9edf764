"""`python -m bench.face_thresholds` at toy size (one crop size, 64-px renders, 3-frame sweep, one identity).

The numbers mean nothing at this size; the test checks that every part runs, writes its JSON + Markdown, and that
the benchmark's own reading of faces agrees with `FaceScorer.score` (it reuses the scorer's internals).
"""
from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.timeout(120)
def test_face_thresholds_smoke(tmp_path):
    from bench import face_thresholds

    face_thresholds.main(["--sizes", "64", "--framings", "1.0", "--resolutions", "64", "--sweep-frames", "3",
                          "--identities", "1", "--no-backbone-turntables", "--out-dir", str(tmp_path),
                          "--name", "ft"])
    data = json.loads((tmp_path / "ft.json").read_text())
    assert (tmp_path / "ft.md").read_text().startswith("# ft")
    assert set(data["tables"]) == {"identity", "pose", "detection", "turntable detection", "smile"}
    pairs = {r["pairs"]: r for r in data["tables"]["identity"]}
    assert pairs["same image, mirrored"]["n"] > 0 and pairs["astronaut vs cameraman"]["n"] > 0
    pose = data["tables"]["pose"]
    assert {r["head"] for r in pose} >= {"analytic, turning", "analytic, not turning (frontal at every yaw)"}
    assert data["facts"]["thresholds"]["min_identity_consistency"] == 0.9
    stills = {r["still"] for r in data["tables"]["smile"]}
    assert "head-prior G_ori: smile" in stills and any(s.startswith("photos/paintings: itself") for s in stills)


def test_read_faces_matches_face_scorer():
    """The benchmark's descriptor cosine and detection agree with `FaceScorer.score` on the same pair."""
    from bench.face_thresholds import face_images, read_faces
    from artmator.model.faces.metrics import FaceScorer

    imgs = [f["image"] for f in face_images([128], [1.0]) if f["source"] in ("astronaut photo", "astronaut_poster")
            and not f["mirror"]]
    scorer = FaceScorer()
    a, b = read_faces(scorer, imgs)
    m = scorer.score([imgs[1]], [0.0], imgs[0], None, {})
    assert a["score"] >= 0.3 and b["score"] >= 0.3 and m.detected_fraction == 1.0
    assert float(a["descriptor"] @ b["descriptor"]) == pytest.approx(m.identity_consistency, abs=0.01)
