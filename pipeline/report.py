"""Reading run reports back: `artmator status` summaries (a running run's partial report included).

The report's schema and statuses are `pipeline.layout`'s (`REPORT_SCHEMA`, `STATUSES`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from artmator.pipeline.claims import Holder, list_holders, process_alive
from artmator.pipeline.layout import COMMITTING, REPORT_SCHEMA, claims_root  # noqa: F401 - REPORT_SCHEMA re-exported
from artmator.pipeline.storage import OutputStore

RUN_COUNTS = ("done", "rendered", "refreshed", "skipped", "claimed", "failed", "invalid", "pending")


def status_summary(out_uri: str, storage_options: Mapping | None = None) -> str:
    """Human-readable status of an output folder, from one listing plus the run reports."""
    store = OutputStore(out_uri, storage_options)
    committed = store.committed_ids()
    reports = store.read_reports()
    holders = list_holders(store.fs, claims_root(store.root))
    lines = [f"{store.uri}: {len(committed)} paintings committed"] + claim_lines(holders)
    if reports.num_rows == 0:
        return "\n".join(lines + ["no runs recorded yet"])
    rows = reports.to_pylist()
    latest: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: r.get("run_id") or ""):
        if r.get("status") not in ("skipped", "pending"):
            latest[r["painting_id"]] = r
    failed = {pid: r for pid, r in latest.items() if r["status"] in ("failed", "invalid") and pid not in committed}
    working = {h.subject for h in active_claims(holders)}
    partial = [pid for pid in store.partial_paintings() if pid not in working]
    lines.append(f"{len(failed)} failed (latest attempt), {len(partial)} partial (no marker, no live claim; redone "
                 "on rerun)")
    reasons = Counter(r.get("error_kind") or "unknown" for r in failed.values())
    for kind, n in reasons.most_common():
        example = next(r for r in failed.values() if (r.get("error_kind") or "unknown") == kind)
        lines.append(f"  {kind}: {n}  e.g. {example['painting_id']}: {(example.get('message') or '')[:160]}")
    lines += _face_lines([r for r in latest.values() if r["status"] in COMMITTING])
    runs = sorted({r["run_id"] for r in rows if r.get("run_id")})
    for run_id in runs[-5:]:
        of_run = [r for r in rows if r.get("run_id") == run_id]
        counts = Counter(r["status"] for r in of_run)
        done = [r for r in of_run if r["status"] == "done"]
        secs = sum(r.get("seconds_total") or 0 for r in done)
        rate = f", {3600 * len(done) / secs:.1f} paintings/hour per actor" if secs else ""
        others = ", ".join(f"{counts[s]} {s}" for s in RUN_COUNTS[1:] if counts.get(s) and s != "skipped")
        state = " (running)" if (of_run[0].get("run_state") == "running") else ""
        lines.append(f"run {run_id}{state}: {counts.get('done', 0)} done{rate}" + (f"; {others}" if others else ""))
    return "\n".join(lines)


def active_claims(holders: list[Holder]) -> list[Holder]:
    """The claims whose lease runs and whose process is not known to be gone (a claim of a process of this host
    that no longer exists is as good as expired: any run takes it over at once)."""
    import socket

    here = socket.gethostname()
    return [h for h in holders if h.live() and not (h.host == here and not process_alive(h.pid, h.pid_started))]


def claim_lines(holders: list[Holder]) -> list[str]:
    """Live claims by run (who is working on what, until when) and the expired ones the next run takes over."""
    live = active_claims(holders)
    lines = []
    if live:
        lines.append(f"{len(live)} live claims (paintings being worked on now):")
        by_run: dict[str, list[Holder]] = {}
        for h in live:
            by_run.setdefault(h.run_id, []).append(h)
        for run_id, held in sorted(by_run.items()):
            purposes = Counter(h.purpose or "?" for h in held)
            example = held[0]
            shown = ", ".join(h.subject for h in held[:5]) + (" ..." if len(held) > 5 else "")
            lines.append(f"  run {run_id}: {len(held)} ({', '.join(f'{n} {p}' for p, n in purposes.most_common())}) "
                         f"on host {example.host}, e.g. {shown}; leases until "
                         f"{max(held, key=lambda h: h.expires_at).describe().rsplit('lease until ', 1)[1]}")
    expired = len(holders) - len(live)
    if expired:
        lines.append(f"{expired} expired claims (their workers stopped; the next run takes them over)")
    return lines


def _face_lines(done: list[dict]) -> list[str]:
    """Mean face-aware metrics and flag counts over the latest committed attempt of each painting."""
    columns = {"face_detected_fraction": "face found in {:.0%} of turntable frames",
               "face_identity_consistency": "identity consistency {:.2f}", "face_likeness": "likeness {:.2f}",
               "face_pose_error_deg": "pose error {:.1f}°"}
    parts = []
    for column, fmt in columns.items():
        values = [v for r in done if isinstance(v := r.get(column), float) and v == v]
        if values:
            parts.append(fmt.format(sum(values) / len(values)))
    if not parts:
        return []
    flags = Counter(f for r in done for f in (r.get("flags") or "").split(",") if f)
    lines = [f"face metrics (mean over {len(done)} committed): " + "; ".join(parts)]
    if flags:
        lines.append("quality flags: " + ", ".join(f"{f} {n}" for f, n in flags.most_common()))
    return lines
