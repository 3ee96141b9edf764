"""Process-tree helpers (Linux /proc) shared by the soak script and the kill tests: find and check a killed
driver's descendants so no stray Ray process survives a test or a soak round."""
from __future__ import annotations

import os
from pathlib import Path


def _parent_of(pid: str) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])   # the comm field may hold spaces and ')'


def descendants(root: int) -> set[int]:
    """Every live descendant pid of `root` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (ppid := _parent_of(entry)) is not None:
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live, non-zombie process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat[0] != "Z":
            out[int(entry)] = (int(stat[1]), cmd)
    return out


def family(root: int, marker: str) -> set[int]:
    """Descendants of `root`, plus every process whose command line names `marker` (e.g. a child's own Ray temp
    dir: Ray daemons leave the process tree)."""
    return descendants(root) | {pid for pid, (_, cmd) in processes().items() if marker in cmd and pid != os.getpid()}


def kill_all(pids: set[int]) -> None:
    """SIGKILL each of `pids` (processes this caller started), by id."""
    import signal

    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
