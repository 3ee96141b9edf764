"""`python -m bench.faces` at toy size, in-process (no Ray): one turned head and its mirror image, one whole
painting, one no-face image, one painting through `analyze_painting`. The numbers mean nothing; the test checks
that the bench runs end to end, writes its JSON + Markdown, and that its measurements are well-formed.
"""
from __future__ import annotations

import json
import math

import pytest


@pytest.mark.timeout(120)
def test_faces_smoke(tmp_path):
    from bench import faces

    faces.main(["--yaws", "28", "--pitches", "0", "--filters", "plain", "--scales", "1", "--canvases", "800",
                "--painting-filters", "plain", "--negatives", "480", "--n", "1", "--no-ray",
                "--inprocess-threads", "1",
                "--out-dir", str(tmp_path), "--name", "f"])
    data = json.loads((tmp_path / "f.json").read_text())
    md = (tmp_path / "f.md").read_text()
    assert md.startswith("# f") and "## pose" in md and "## detection" in md and "## throughput" in md
    assert data["environment"]["torch"] and set(data["tables"]) == {"pose", "detection", "throughput"}

    pose = {r["filter"]: r for r in data["tables"]["pose"]}
    assert set(pose) == {"plain", "template (perfect landmarks)"}
    assert set(faces.POSE_COLUMNS) <= set(pose["plain"])
    for r in data["tables"]["pose"] + data["tables"]["detection"]:
        for key, value in r.items():
            if key.startswith(("det_", "yaw_sign_agree")) and value is not None:
                assert 0.0 <= value <= 1.0, (key, value)
    # the pose fit alone recovers the pose of exact template landmarks
    assert pose["template (perfect landmarks)"]["yaw_mae"] < 0.5

    # a clearly turned head: the mirrored image gets the opposite yaw sign, both the sign of the truth
    samples = {s["mirrored"]: s for s in data["samples"]["pose"]}
    assert set(samples) == {False, True}
    assert samples[False]["yaw_true"] == 28 and samples[True]["yaw_true"] == -28
    assert samples[False]["detected_0.3"] and samples[True]["detected_0.3"]
    assert samples[False]["yaw_est"] > 5 and samples[True]["yaw_est"] < -5
    assert pose["plain"]["yaw_sign_agree"] == 1.0 and pose["plain"]["mirror_pairs"] == 1

    detection = {r["group"]: r for r in data["tables"]["detection"]}
    assert detection["all paintings"]["images"] == 2                   # plain + mirrored
    assert detection["all paintings"]["det_0.3"] == 1.0                 # 85 px face on an 800x1000 canvas
    assert detection["no-face images (false positive rate)"]["images"] == 2   # no_face_painting + empty canvas

    throughput = {r["what"]: r for r in data["tables"]["throughput"]}
    alone = [r for what, r in throughput.items() if what.startswith("in-process FaceAnalyzer.faces alone")]
    assert alone and "in-process analyze_painting, 1 thread(s)" in throughput
    for row in alone:
        assert row["per_painting"] > 0 and math.isfinite(row["paintings_per_min"])
    assert not any(k.startswith("prepare()") for k in throughput)       # --no-ray: no Ray run
