"""The review contact sheet of `artmator prepare`: what a curator checks before a night of GPU time.

One static page (works from file://, makes no external request): for each catalog row the painting with the
detected face box, the 68 landmarks and the aligned training square drawn over it, the aligned face as the
backbone will see it, the pose and where it came from, and the row's status. Rows without a usable face come
first, so problems are seen before successes. Every catalog string is HTML-escaped: titles are data.
"""
from __future__ import annotations

from html import escape
from urllib.parse import quote

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;background:#f6f4ef;color:#222}
h1{font-size:1.3rem;margin:0 0 .3rem} .summary{margin:0 0 1rem;color:#555}
.row{display:flex;gap:1rem;align-items:flex-start;background:#fff;border:1px solid #ddd;border-radius:6px;
     padding:.75rem;margin:0 0 .75rem}
.paint{position:relative;flex:0 0 auto} .paint img,.paint svg{display:block} .paint svg{position:absolute;left:0;top:0}
.face img{display:block;border:1px solid #ccc} .meta{min-width:16rem} .meta dt{font-weight:600;float:left;width:7.5rem}
.meta dd{margin:0 0 .2rem 7.5rem} .status{display:inline-block;padding:.1rem .5rem;border-radius:1rem;
     font-weight:600;background:#fde2e1;color:#8a1c13} .status.ok{background:#dff3e3;color:#14532d}
.legend span{margin-right:1rem} .box{color:#e4572e} .lm{color:#17bebb} .sq{color:#ffc914}
"""


def review_page(results: list[dict], assets_dir: str, catalog_uri: str, run_id: str = "") -> str:
    """HTML of the contact sheet; `assets_dir` is the thumbnails' folder relative to the page, `run_id` the
    prepare run that wrote it (also named in the manifest and report it was written with)."""
    ordered = sorted(results, key=lambda r: (r.get("status") == "ok", r.get("row") if r.get("row") is not None
                                             else -1, str(r.get("painting_id"))))
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = ", ".join(f"{n} {escape(s)}" for s, n in sorted(counts.items()))
    rows = "\n".join(_row(r, assets_dir) for r in ordered)
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta name=\"artmator-prepare-run\" content=\"{escape(run_id)}\">"
            f"<title>artmator prepare: review</title><style>{_STYLE}</style></head><body>\n"
            f"<h1>Faces found in {escape(catalog_uri)}</h1>\n"
            f"<p class=\"summary\">{len(results)} rows: {summary}. Rows without a usable face come first.</p>\n"
            f"<p class=\"legend\"><span class=\"box\">&#9632; detector box</span><span class=\"lm\">&#9679; 68 "
            f"landmarks</span><span class=\"sq\">&#9633; training crop (rotated square)</span></p>\n"
            f"{rows}\n</body></html>\n")


def _row(r: dict, assets_dir: str) -> str:
    review = r.get("review") or {}
    status = r.get("status", "")
    meta = [("id", r.get("painting_id")), ("status", None), ("faces found", r.get("faces_found")),
            ("confidence", _num(r.get("face_confidence"), 3)), ("yaw / pitch", _pose(r)),
            ("roll", _num(r.get("roll_deg"), 1, "°")), ("face size", _num(r.get("face_size_px"), 0, " px")),
            ("image", r.get("image_uri")), ("message", r.get("message") or None)]
    items = "".join(
        f"<dt>{escape(k)}</dt><dd>" + (f"<span class=\"status{' ok' if status == 'ok' else ''}\">{escape(status)}</span>"
                                      if k == "status" else escape(str(v))) + "</dd>"
        for k, v in meta if v is not None or k == "status")
    return (f"<section class=\"row\" id=\"{escape(quote(str(r.get('painting_id')), safe=''))}\">"
            f"{_painting(review, assets_dir)}{_face(review, assets_dir)}<dl class=\"meta\">{items}</dl></section>")


def _painting(review: dict, assets_dir: str) -> str:
    if not review.get("thumb"):
        return ""
    w, h = review["size"]
    s = review["thumb_scale"]
    tw, th = round(w * s), round(h * s)
    shapes = []
    if review.get("box"):
        x, y, bw, bh = (v * s for v in review["box"])
        shapes.append(f"<rect x=\"{x:.1f}\" y=\"{y:.1f}\" width=\"{bw:.1f}\" height=\"{bh:.1f}\" fill=\"none\" "
                      f"stroke=\"#e4572e\" stroke-width=\"2\"/>")
    if review.get("corners"):
        pts = " ".join(f"{px * s:.1f},{py * s:.1f}" for px, py in review["corners"])
        shapes.append(f"<polygon points=\"{pts}\" fill=\"none\" stroke=\"#ffc914\" stroke-width=\"2\"/>")
    for px, py in review.get("landmarks") or []:
        shapes.append(f"<circle cx=\"{px * s:.1f}\" cy=\"{py * s:.1f}\" r=\"1.6\" fill=\"#17bebb\"/>")
    src = escape(f"{assets_dir}/{quote(review['thumb'])}")
    return (f"<div class=\"paint\" style=\"width:{tw}px;height:{th}px\"><img src=\"{src}\" width=\"{tw}\" "
            f"height=\"{th}\" loading=\"lazy\" alt=\"painting\"><svg width=\"{tw}\" height=\"{th}\" "
            f"viewBox=\"0 0 {tw} {th}\" aria-hidden=\"true\">{''.join(shapes)}</svg></div>")


def _face(review: dict, assets_dir: str) -> str:
    if not review.get("crop"):
        return ""
    src = escape(f"{assets_dir}/{quote(review['crop'])}")
    return f"<div class=\"face\"><img src=\"{src}\" loading=\"lazy\" alt=\"aligned face\"></div>"


def _num(v, digits: int, unit: str = "") -> str | None:
    return None if v is None else f"{v:.{digits}f}{unit}"


def _pose(r: dict) -> str | None:
    if r.get("yaw_deg") is None:
        return None
    return f"{r['yaw_deg']:.1f}° / {r['pitch_deg']:.1f}° ({r.get('pose_source')})"
