"""Progress of a run where overnight jobs run: periodic `logging` lines and a partial report, no terminal needed.

`ray job submit`, KubeRay pod logs and CI capture a driver's stderr, not a progress bar: `RunProgress` logs one
line every `interval_s` (finished / failed / running, rate, ETA) through the `artmator` logger and hands the
rows so far to a callback that rewrites the run's report (state "running"), which `artmator status` reads while
the run goes on. `configure_logging` sets the level and the format (text, or one JSON object per line for log
collectors) of the `artmator` loggers only: Ray's own loggers are left as Ray configures them.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping

import click

LOGGER = "artmator"
log = logging.getLogger(f"{LOGGER}.run")
LOG_LEVELS = ("debug", "info", "warning", "error")


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Send the `artmator` loggers to stderr at `level`, as text lines or JSON objects (python-json-logger)."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(level.upper())
    for handler in list(logger.handlers):
        if getattr(handler, "_artmator", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._artmator = True  # type: ignore[attr-defined]
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level"}))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False


def logging_options(fn):
    """`--log-level` and `--log-format` for the commands that run jobs; logging is configured before they start."""
    fn = click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
                      help="Log lines as text or as one JSON object per line (for log collectors).")(fn)
    fn = click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="info",
                      show_default=True, help="Level of artmator's log lines (progress lines are info).")(fn)
    return fn


def duration(seconds: float | None) -> str:
    """'2h05m', '4m10s', '12s', or 'unknown'."""
    if seconds is None or seconds != seconds:
        return "unknown"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class RunProgress:
    """Counts finished paintings per action and reports them every `interval_s` seconds from a daemon thread.

    `work`: paintings to process per action ("tune", "render", "refresh"); `estimates`: seconds per painting
    and actor from earlier runs (`plan`'s history), used until this run has measured its own; `parallel`:
    how many paintings of an action run at once (its actor pool). `on_tick(finished_rows)` runs after each
    log line (the partial report)."""

    STATUS_ACTION = {"done": "tune", "rendered": "render", "refreshed": "refresh"}

    def __init__(self, run_id: str, work: Mapping[str, int], estimates: Mapping[str, float] | None = None,
                 interval_s: float = 60.0, on_tick: Callable[[list[dict]], None] | None = None):
        self.run_id, self.work = run_id, {a: n for a, n in work.items() if n}
        self.estimates = dict(estimates or {})
        self.interval_s, self.on_tick = interval_s, on_tick
        self.parallel: dict[str, int] = {}
        self.rows: list[dict] = []
        self.finished = {a: 0 for a in self.work}
        self.seconds = {a: 0.0 for a in self.work}
        self.failed = 0
        self.phase: str | None = None
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "RunProgress":
        total = sum(self.work.values())
        log.info("run %s: %d paintings to process (%s)", self.run_id, total,
                 ", ".join(f"{a} {n}" for a, n in self.work.items()) or "nothing")
        if total and self.interval_s > 0:
            self._thread = threading.Thread(target=self._loop, name="artmator-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def begin(self, action: str, parallel: int) -> None:
        with self._lock:
            self.phase, self.parallel[action] = action, max(1, parallel)
        log.info("run %s: %s %d paintings on %d %s", self.run_id, {"tune": "tuning", "render": "re-rendering",
                 "refresh": "refreshing"}[action], self.work.get(action, 0), max(1, parallel),
                 "actors" if action != "refresh" else "tasks")

    def add(self, action: str, row: dict) -> None:
        with self._lock:
            self.rows.append(row)
            self.finished[action] = self.finished.get(action, 0) + 1
            seconds = row.get("seconds_total")
            if isinstance(seconds, float) and seconds == seconds:
                self.seconds[action] = self.seconds.get(action, 0.0) + seconds
            if row.get("status") == "failed":
                self.failed += 1

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.rows)

    def eta_seconds(self) -> float | None:
        """Remaining wall time: per action, paintings left × seconds each ÷ paintings at once."""
        total = 0.0
        for action, n in self.work.items():
            left = n - self.finished.get(action, 0)
            if left <= 0:
                continue
            done = self.finished.get(action, 0)
            each = self.seconds[action] / done if done and self.seconds.get(action) else self.estimates.get(action)
            if each is None:
                return None
            total += left * each / self.parallel.get(action, 1)
        return total

    def line(self) -> str:
        with self._lock:
            total = sum(self.work.values())
            finished = sum(self.finished.values())
            statuses = {s: sum(r.get("status") == s for r in self.rows) for s in ("done", "rendered", "refreshed")}
            running = min(self.parallel.get(self.phase, 0), self.work.get(self.phase, 0)
                          - self.finished.get(self.phase, 0)) if self.phase else 0
            failed = self.failed
        elapsed = time.monotonic() - self.start
        rate = f"{3600 * finished / elapsed:.1f} paintings/h" if finished and elapsed > 0 else "rate unknown"
        parts = ", ".join(f"{s} {n}" for s, n in statuses.items() if n)
        return (f"run {self.run_id}: {finished}/{total} finished ({parts + ', ' if parts else ''}failed {failed}), "
                f"running {max(0, running)}, {rate}, ETA {duration(self.eta_seconds())}")

    def tick(self) -> None:
        log.info(self.line())
        if self.on_tick is not None:
            try:
                self.on_tick(self.snapshot())
            except Exception as exc:  # noqa: BLE001 - a partial report is a convenience; the run goes on
                log.warning("could not write the partial report: %s", exc)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()
