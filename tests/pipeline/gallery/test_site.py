"""build_gallery: what it lists, what it refuses, and incremental rebuilds."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from artmator.pipeline.gallery import build_gallery
from artmator.pipeline.gallery.command import gallery
from artmator.pipeline.gallery.pages import json_script
from artmator.pipeline.storage import OutputStore

from .conftest import PaintingSpec, marker_file, write_painting, write_report

SMALL = {"frames": 8, "size": 48}


def site_files(site) -> dict[str, float]:
    return {str(p.relative_to(site)): p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()}


def media_of(site: Path, pid: str) -> Path:
    """The media folder the painting's pages show now (from its stamp)."""
    stamp = json.loads((site / "p" / pid / "_gallery.json").read_text())
    return site / "p" / pid / f"m-{stamp['media_key'][:16]}"


@pytest.mark.timeout(120)
def test_summary_of_session_site(built_site):
    summary = built_site.summary
    assert summary.paintings == ["mona.lisa", "xss-1"]
    assert sorted(summary.encoded) == ["mona.lisa", "xss-1"] and summary.reused == []
    assert [u.painting_id for u in summary.unavailable] == ["broken_1"]  # latest report only
    assert not (built_site.site / "p" / "no_marker").exists()
    mona = built_site.site / "p" / "mona.lisa"
    media = media_of(built_site.site, "mona.lisa")
    assert sorted(p.name for p in mona.iterdir()) == sorted(["index.html", "manifest.json", "_gallery.json",
                                                             media.name])
    for name in ("poster.png", "thumb.webp", "sprite.webp", "turntable.webm", "turntable.mp4", "turntable.webp",
                 "expr/0.png", "expr/1.png"):
        assert (media / name).is_file(), name
    assert f'src="{media.name}/poster.png"' in (mona / "index.html").read_text()
    # The committed turntable.webp was copied, not re-encoded.
    assert (media / "turntable.webp").read_bytes() == \
        OutputStore(str(built_site.out)).read_file("mona.lisa", "renders/turntable.webp")
    assert not list(built_site.site.rglob("*.tmp"))


@pytest.mark.timeout(120)
def test_incremental_rebuild_adds_without_reencoding(tmp_path):
    out, site = tmp_path / "out", tmp_path / "site"
    write_painting(out, PaintingSpec("a", {"title": "A"}, **SMALL))
    first = build_gallery(str(out), str(site))
    assert first.encoded == ["a"]
    before = site_files(site)
    write_painting(out, PaintingSpec("b", {"title": "B"}, hue=90, **SMALL))
    write_painting(out, PaintingSpec("c", {"title": "C"}, commit=False, **SMALL))
    second = build_gallery(str(out), str(site))
    assert second.paintings == ["a", "b"] and second.encoded == ["b"] and second.reused == ["a"]
    after = site_files(site)
    for rel, mtime in before.items():
        if rel.startswith("p/a/"):
            assert after[rel] == mtime, f"{rel} was rewritten"
    assert "B" in (site / "index.html").read_text() and "p/c/" not in (site / "index.html").read_text()

    # New metadata only: pages are rewritten, media are not re-encoded.
    write_painting(out, PaintingSpec("a", {"title": "A, retitled"}, **SMALL))
    third = build_gallery(str(out), str(site))
    assert third.encoded == [] and sorted(third.reused) == ["a", "b"]
    webm = str((media_of(site, "a") / "turntable.webm").relative_to(site))
    assert site_files(site)[webm] == before[webm]
    assert "A, retitled" in (site / "p" / "a" / "index.html").read_text()

    # New frames (different sha256s): re-encoded into a new media folder; the old one goes once no page shows it.
    old = media_of(site, "a")
    write_painting(out, PaintingSpec("a", {"title": "A, retitled"}, hue=200, **SMALL))
    assert build_gallery(str(out), str(site)).encoded == ["a"]
    assert media_of(site, "a") != old and not old.exists()
    assert f'src="p/a/{media_of(site, "a").name}/thumb.webp"' in (site / "index.html").read_text()

    # Decommitted: removed from the site and the index.
    marker_file(out, "b").unlink()
    fourth = build_gallery(str(out), str(site))
    assert fourth.removed == ["b"] and not (site / "p" / "b").exists()


@pytest.mark.timeout(120)
def test_untrusted_layout_is_refused(tmp_path):
    out, site = tmp_path / "out", tmp_path / "site"
    write_painting(out, PaintingSpec("good", {"title": "Good"}, **SMALL))
    # Files changed after commit: not shown (never broken), reported as skipped.
    write_painting(out, PaintingSpec("tampered", {"title": "T"}, **SMALL))
    Path(OutputStore(str(out)).read_commit("tampered").path_of("renders/turntable/003.png")).write_bytes(b"not png")
    # A marker naming another painting, and one pointing outside its folder.
    write_painting(out, PaintingSpec("liar", {"title": "L"}, **SMALL))
    marker = marker_file(out, "liar")
    marker.write_text(marker.read_text().replace('"painting_id": "liar"', '"painting_id": "good"'))
    write_painting(out, PaintingSpec("escape", {"title": "E"}, **SMALL))
    marker = marker_file(out, "escape")
    doc = json.loads(marker.read_text())
    doc["files"]["result.json"]["path"] = "../good/" + doc["files"]["result.json"]["path"]
    marker.write_text(json.dumps(doc))
    # An id the contract forbids.
    bad = out / "commits" / "-bad id"
    bad.mkdir(parents=True)
    (bad / "v000001-abcdef.0000000000000000.0000000000000000.0000000000000000.0000000000000000.0000000000000000"
           ".json").write_text("{}")
    summary = build_gallery(str(out), str(site))
    assert summary.paintings == ["good"]
    assert {u.painting_id for u in summary.skipped} == {"tampered", "liar", "escape", "-bad id"}
    assert "changed after commit" in next(u.reason for u in summary.skipped if u.painting_id == "tampered")
    assert sorted(p.name for p in (site / "p").iterdir()) == ["good"]  # frames are verified before writing
    assert "tampered" not in (site / "index.html").read_text()


@pytest.mark.timeout(120)
def test_failed_and_recovered(tmp_path):
    out, site = tmp_path / "out", tmp_path / "site"
    write_painting(out, PaintingSpec("ok", {"title": "Ok"}, **SMALL))
    write_report(out, "run-9", [{"painting_id": "ok", "status": "failed", "error_kind": "x", "message": "y"},
                                {"painting_id": "gone", "status": "failed", "error_kind": "no_face",
                                 "message": None},
                                {"painting_id": "../etc", "status": "failed", "error_kind": "x", "message": "y"}])
    summary = build_gallery(str(out), str(site))
    # Committed earlier and still committed: shown, not listed as unavailable; invalid ids dropped.
    assert [(u.painting_id, u.reason) for u in summary.unavailable] == [("gone", "no_face")]


def test_json_script_escaping():
    text = json_script({"t": "</script><!-- \u2028\u2029 & >"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"t": "</script><!-- \u2028\u2029 & >"}


@pytest.mark.timeout(120)
def test_command_builds_default_site(tmp_path):
    out = tmp_path / "out"
    write_painting(out, PaintingSpec("cli", {"title": "Cli"}, **SMALL))
    result = CliRunner().invoke(gallery, [str(out), "--title", "CLI gallery", "--storage-option", "auto_mkdir=true"])
    assert result.exit_code == 0, result.output
    index = out / "gallery" / "index.html"
    assert index.is_file() and "CLI gallery" in index.read_text()
    assert result.output.strip().splitlines()[-1] == index.resolve().as_uri()
    bad = CliRunner().invoke(gallery, [str(out), "--base-url", "not a url"])
    assert bad.exit_code != 0 and "absolute URL" in bad.output
    bad = CliRunner().invoke(gallery, [str(out), "--storage-option", "novalue"])
    assert bad.exit_code != 0
    assert os.path.isdir(out / "gallery" / "p" / "cli")


def test_viewer_page_shows_face_metrics_and_pose_source():
    import json as _json

    from artmator.pipeline.gallery.pages import _face_text, _quality
    from artmator.pipeline.gallery.source import parse_result

    doc = {"painting_id": "p", "metadata": {"title": "T"}, "turntable": {"yaw_deg": [0.0], "fps": 12},
           "pose": {"yaw_deg": 12.0, "estimated": True, "source": "landmarks"},
           "quality": {"flags": ["identity_drift"]},
           "face": {"detected_fraction": 0.875, "identity_consistency": 0.8123, "likeness": "<b>x</b>",
                    "pose_error_deg": 6.4, "expressions": {}}}
    result = parse_result(_json.dumps(doc).encode(), "p")
    assert result.face == {"detected_fraction": 0.875, "identity_consistency": 0.8123, "pose_error_deg": 6.4}
    assert result.pose_source == "landmarks"
    text = _face_text(result.face)
    assert text == ("Face metrics: face found in 88 % of turntable frames; identity consistency 0.81; "
                    "pose error 6\u00b0")
    html = _quality(result)
    assert "face-scores" in html and "identity_drift" in html and "<b>" not in html


def _pages_show_whole_versions(site: Path) -> list[str]:
    """Problems a reader of the site would see: a page, manifest or index card pointing at missing media, or at
    media of more than one version (all of a page's media must lie in ONE m-<key>/ folder, all present)."""
    import re

    problems = []
    index = (site / "index.html").read_text() if (site / "index.html").exists() else ""
    for src in re.findall(r'src="(p/[^"]+)"', index):
        if not (site / src).is_file():
            problems.append(f"index: {src}")
    for page in site.glob("p/*/index.html"):
        text = page.read_text()
        refs = [r for r in re.findall(r'(?:src|href)="([^"#]+)"', text)
                if not r.startswith("../../") and r != "manifest.json"]
        refs += [e["src"] for e in json.loads(re.search(r'id="viewer-data">(.*?)</script>', text).group(1))
                 ["expressions"]]
        folders = {r.split("/", 1)[0] for r in refs}
        if len(folders) != 1 or not next(iter(folders)).startswith("m-"):
            problems.append(f"{page.parent.name}/index.html shows media from {sorted(folders)}")
        problems += [f"{page.parent.name}/index.html: {r}" for r in refs if not (page.parent / r).is_file()]
    for manifest in site.glob("p/*/manifest.json"):
        urls = [u.split("/p/", 1)[1] for u in re.findall(r'"id": "([^"]+\.(?:webm|mp4|webp|png))"',
                                                        manifest.read_text())]
        if len({u.split("/")[1] for u in urls}) != 1:
            problems.append(f"{manifest.parent.name}/manifest.json shows media from several folders")
        problems += [f"{manifest.parent.name}/manifest.json: {u}" for u in urls if not (site / "p" / u).is_file()]
    return problems


@pytest.mark.timeout(180)
def test_a_build_killed_at_any_write_leaves_every_page_whole(tmp_path, monkeypatch):
    """Each site write is a crash point of an update (new frames for one painting, a new title for another):
    whatever was written, every page, manifest and index card shows one complete version; the next build
    finishes the job and collects the older media."""
    from artmator.pipeline.gallery import site as site_module

    out, site = tmp_path / "out", tmp_path / "site"
    write_painting(out, PaintingSpec("a", {"title": "A"}, **SMALL))
    write_painting(out, PaintingSpec("b", {"title": "B"}, hue=90, **SMALL))
    build_gallery(str(out), str(site))
    write_painting(out, PaintingSpec("a", {"title": "A"}, hue=200, **SMALL))        # new media
    write_painting(out, PaintingSpec("b", {"title": "B, retitled"}, hue=90, **SMALL))  # new pages only
    real_put = site_module._Site.put
    writes = []

    def counting(self, rel, data):
        writes.append(rel)
        real_put(self, rel, data)

    shutil.copytree(site, tmp_path / "probe")
    monkeypatch.setattr(site_module._Site, "put", counting)
    build_gallery(str(out), str(tmp_path / "probe"), workers=1)
    monkeypatch.undo()
    assert any("/m-" in w for w in writes) and "p/b/index.html" in writes and writes[-1] == "index.html"
    for crash_at in range(len(writes)):
        crashed = tmp_path / f"site{crash_at}"
        shutil.copytree(site, crashed)
        calls = []

        def crashing(self, rel, data, calls=calls):
            calls.append(rel)
            if len(calls) > crash_at:
                raise KeyboardInterrupt(f"killed before writing {rel} (injected)")
            real_put(self, rel, data)

        monkeypatch.setattr(site_module._Site, "put", crashing)
        with pytest.raises(KeyboardInterrupt):
            build_gallery(str(out), str(crashed), workers=1)
        monkeypatch.undo()
        assert _pages_show_whole_versions(crashed) == [], (crash_at, calls[-1])
        build_gallery(str(out), str(crashed))                                 # the next build finishes it
        assert _pages_show_whole_versions(crashed) == []
        assert "B, retitled" in (crashed / "p" / "b" / "index.html").read_text()
        assert sorted(p.name for p in (crashed / "p" / "a").iterdir() if p.name.startswith("m-")) == \
            [media_of(crashed, "a").name]


@pytest.mark.timeout(120)
def test_one_build_writes_a_site_at_a_time(tmp_path):
    import threading
    import time

    from artmator.pipeline.claims import Claims
    from artmator.pipeline.gallery.site import GalleryBusy
    from artmator.pipeline.layout import GALLERY_SUBJECT, site_claims_root

    out, site = tmp_path / "out", tmp_path / "site"
    write_painting(out, PaintingSpec("a", {"title": "A"}, **SMALL))
    holder = Claims(OutputStore(str(site)).fs, site_claims_root(str(site)), "gallery-other").take(GALLERY_SUBJECT,
                                                                                                   "gallery")
    with pytest.raises(GalleryBusy, match="run gallery-other"):
        build_gallery(str(out), str(site))
    result = CliRunner().invoke(gallery, [str(out), "--site", str(site), "--wait", "0"])
    assert result.exit_code != 0 and "being written by another gallery build" in result.output
    assert not (site / "index.html").exists()
    threading.Timer(1.5, holder.release).start()
    start = time.monotonic()
    summary = build_gallery(str(out), str(site), wait_s=60)                  # waits for the other build
    assert summary.paintings == ["a"] and time.monotonic() - start >= 1.0


@pytest.mark.timeout(180)
def test_a_rebuild_after_one_painting_changed_writes_only_its_files_and_the_index(tmp_path, monkeypatch):
    """Three paintings published; then one changes (its metadata, then its frames): the rebuild writes that
    painting's files and the site-wide index files (index pages, search index, collection), nothing else."""
    from artmator.pipeline.gallery import site as site_module

    out, site = tmp_path / "out", tmp_path / "site"
    for i, pid in enumerate(("a", "b", "c")):
        write_painting(out, PaintingSpec(pid, {"title": pid.upper()}, hue=40 * i, **SMALL))
    build_gallery(str(out), str(site))
    written: list[str] = []
    real_put = site_module._Site.put

    def spy(self, rel, data):
        written.append(rel)
        return real_put(self, rel, data)

    monkeypatch.setattr(site_module._Site, "put", spy)
    index_files = {"index.html", "index.json", "index-data.js", "collection.json"}

    untouched = build_gallery(str(out), str(site))                       # nothing changed
    assert untouched.encoded == [] and set(written) == index_files, written
    written.clear()
    write_painting(out, PaintingSpec("b", {"title": "B, retitled"}, hue=40, **SMALL))
    retitled = build_gallery(str(out), str(site))
    assert retitled.encoded == []
    pages_of_b = {"p/b/index.html", "p/b/manifest.json", "p/b/_gallery.json"}
    assert pages_of_b <= set(written) and all(rel.startswith("p/b/") for rel in set(written) - index_files)
    assert [rel for rel in written if "/m-" in rel] in ([], [f"p/b/{media_of(site, 'b').name}/model_card.md"])
    written.clear()
    before = site_files(site)
    write_painting(out, PaintingSpec("b", {"title": "B, retitled"}, hue=200, **SMALL))
    reframed = build_gallery(str(out), str(site))
    assert reframed.encoded == ["b"]
    assert {rel for rel in written if not rel.startswith("p/b/")} == index_files, written
    after = site_files(site)
    changed = {rel for rel in after if before.get(rel) != after[rel] and not rel.startswith("_claims/")}  # the
    # build's own claim is bookkeeping, not the site
    assert {rel.split("/")[1] for rel in changed if rel.startswith("p/")} == {"b"}
    assert all(rel.startswith("p/b/") or rel in index_files for rel in changed), sorted(changed)
