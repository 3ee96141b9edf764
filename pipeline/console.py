"""The console of a command: known-harmless error lines of Ray's C++ core kept off it (logged at DEBUG instead).

Ray's core worker writes its error-level lines straight to file descriptor 2 of the driver process, past Python's
`logging`. One of them appears during every healthy run: Ray Data starts its map actors with the data context
and the map function as object references and with `max_restarts=-1`, and Ray core then warns (ray#53727,
`core_worker.cc`) that such an actor could not be restarted if those objects were lost from the object store.
They are not lost here: the driver's Ray Data operator holds both references until its dataset finishes, and if
the driver's node goes, the job goes with it. A newcomer reads an `E` line as a failure, so exactly these lines are
dropped; every other byte written to fd 2 (by Ray, by native libraries, by child processes) passes unchanged.

Python's own `sys.stderr` keeps writing to the original stream directly (and so still knows whether it is a
terminal); only what is written to fd 2 below Python goes through the filter.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading
from typing import Iterator

log = logging.getLogger("artmator.ray")

KNOWN_HARMLESS = (
    # ray#53727 (Ray Data map actors; see the module docstring).
    re.compile(r"core_worker\.cc:\d+: Actor with class name: 'MapWorker\(.*\)' and ID: '[0-9a-f]+' has constructor "
               r"arguments in the object store and max_restarts > 0"),
)


def is_known_harmless(line: str, patterns=KNOWN_HARMLESS) -> bool:
    return any(p.search(line) for p in patterns)


def _forward(read_fd: int, out_fd: int, patterns) -> None:
    """Copy lines from the pipe to the original stderr, dropping the known-harmless ones (whole lines only)."""
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        kept = []
        for line in lines:
            if is_known_harmless(line.decode("utf-8", "replace"), patterns):
                log.debug("dropped a known-harmless Ray core line: %s", line.decode("utf-8", "replace"))
            else:
                kept.append(line + b"\n")
        if kept:
            _write_all(out_fd, b"".join(kept))
    if pending and not is_known_harmless(pending.decode("utf-8", "replace"), patterns):
        _write_all(out_fd, pending)
    os.close(read_fd)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:          # the original stderr is gone (a closed pipe): nothing left to tell
        pass


@contextlib.contextmanager
def quiet_known_ray_lines(patterns=KNOWN_HARMLESS) -> Iterator[None]:
    """While inside, fd 2 goes through a line filter that drops `patterns`; a no-op when stderr is not fd 2
    (an embedding application's or a test runner's captured stream)."""
    try:
        sys.stderr.flush()
        if sys.stderr.fileno() != 2:
            raise io.UnsupportedOperation
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        yield
        return
    original = os.dup(2)
    read_fd, write_fd = os.pipe()
    thread = threading.Thread(target=_forward, args=(read_fd, original, patterns), name="artmator-stderr",
                              daemon=True)
    thread.start()
    old_stderr = sys.stderr
    sys.stderr = open(original, "w", buffering=1, encoding=getattr(old_stderr, "encoding", None) or "utf-8",
                      errors="backslashreplace", closefd=False)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = old_stderr
        os.dup2(original, 2)     # our end of the pipe closes; the filter ends when child processes' copies do
        thread.join(timeout=2.0)
        if not thread.is_alive():
            os.close(original)
