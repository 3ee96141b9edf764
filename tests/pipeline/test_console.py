"""The console filter: Ray core's known-harmless E line (ray#53727) is dropped from fd 2, nothing else is."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from artmator.pipeline.console import is_known_harmless

RAY_LINE = ("[2026-11-26 06:27:58,338 E 3939 3939] core_worker.cc:2465: Actor with class name: "
            "'MapWorker(MapBatches(TuneActor))' and ID: 'c51a8827148c6d9ce77501a901000000' has constructor arguments "
            "in the object store and max_restarts > 0. If the arguments in the object store go out of scope or are "
            "lost, the actor restart will fail. See https://github.com/ray-project/ray/issues/53727 for more details.")


def test_only_the_known_line_is_harmless():
    assert is_known_harmless(RAY_LINE)
    assert not is_known_harmless("[2026-11-26 06:27:58,338 E 3939 3939] core_worker.cc:900: Failed to connect to GCS")
    assert not is_known_harmless("has constructor arguments in the object store")   # not Ray's own line


@pytest.mark.timeout(60)
def test_fd2_filter_in_a_process_and_its_children():
    # Ray's line is written below Python (os.write on fd 2), by a shell child and by a Python child; so are others.
    script = textwrap.dedent("""
        import os, subprocess, sys
        from artmator.pipeline.console import quiet_known_ray_lines
        line = os.environ["RAY_LINE"].encode()
        with quiet_known_ray_lines():
            os.write(2, b"native before\\n" + line + b"\\nnative after, no newline at first")
            os.write(2, b" ...then the rest\\n")
            subprocess.run(["sh", "-c", 'echo child line >&2; echo "$RAY_LINE" >&2'], check=True)
            subprocess.run([sys.executable, "-c", "import os; os.write(2, os.environ['RAY_LINE'].encode() + bytes([10]))"],
                           check=True)
            print("python stderr", file=sys.stderr)
            print("isatty", sys.stderr.isatty(), file=sys.stderr)
        os.write(2, b"after the filter\\n")
    """)
    env = {**os.environ, "RAY_LINE": RAY_LINE}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=50, env=env)
    err = out.stderr.decode()
    assert out.returncode == 0, err
    lines = err.splitlines()
    assert "native before" in lines and "native after, no newline at first ...then the rest" in lines
    assert "child line" in lines and "python stderr" in lines and "after the filter" in lines
    assert "isatty False" in lines                                     # the original stream, a pipe here
    assert not any(line.startswith("[2026-11-26 06:27:58,338 E") for line in lines), err
    assert err.count("ray-project/ray/issues/53727") == 0


@pytest.mark.timeout(60)
def test_fd2_filter_keeps_a_terminal_a_terminal():
    import pty

    script = ("import sys\nfrom artmator.pipeline.console import quiet_known_ray_lines\n"
              "with quiet_known_ray_lines():\n    print('isatty', sys.stderr.isatty(), file=sys.stderr)\n")
    main, child_end = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=child_end, stdout=subprocess.DEVNULL)
    os.close(child_end)
    proc.wait(timeout=50)
    data = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    os.close(main)
    assert b"isatty True" in data, data
