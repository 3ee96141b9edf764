"""Shared benchmark plumbing: environment facts, a same-process matmul reference, JSON + Markdown output."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def environment(device: torch.device) -> dict:
    """Machine, versions and git commit, recorded with every result."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    env = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit or "unknown",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    malloc = {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD"))}
    if malloc:
        env["malloc_env"] = " ".join(f"{k}={v}" for k, v in sorted(malloc.items()))
    return env


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    """Fastest of `repeats` timed calls (seconds) after `warmup` untimed ones: the least noisy estimate here."""
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def best_times(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1) -> tuple[float, float]:
    """Fastest wall time and fastest process CPU time of `repeats` calls after `warmup` untimed ones. On a shared
    CPU the CPU time is the steadier measure (it leaves out time spent waiting for a core; with one thread it is
    the compute time); on a GPU only the wall time means anything."""
    for _ in range(warmup):
        fn()
    sync(device)
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def matmul_cpu_flops_per_second(n: int = 2048, repeats: int = 3) -> float:
    """The n×n fp32 matmul reference on the CPU in process CPU time (for CPU-time ratios)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    _, cpu = best_times(lambda: a @ b, torch.device("cpu"), repeats=repeats)
    return 2 * n ** 3 / cpu


def matmul_flops_per_second(device: torch.device, n: int = 2048, dtype=torch.float32, repeats: int = 3) -> float:
    """Dense n×n matmul throughput in this process: the reference every FLOP/s ratio is measured against."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = best_time(lambda: a @ b, device, repeats=repeats)
    return 2 * n ** 3 / seconds


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of matmul-like ops (linear, bmm, conv...) in one call, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def write_results(name: str, rows: Sequence[dict], env: dict, columns: Sequence[str], notes: str = "",
                  out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write `<name>.json` and `<name>.md` (a table of `columns`) and return their paths."""
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps({"benchmark": name, "environment": env, "rows": list(rows), "notes": notes},
                                    indent=2) + "\n")
    lines = [f"# {name}", "", " | ".join(f"{k}: {v}" for k, v in env.items()), ""]
    if notes:
        lines += [notes, ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> list[str]:
    """Markdown lines of a table of `columns` (missing or None cells stay empty)."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + [
        "| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]


def write_tables(name: str, env: dict, settings: dict, tables: dict[str, list[dict]],
                 columns: dict[str, Sequence[str]], facts: dict, extra: dict | None = None,
                 out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write `<name>.json` (environment, settings, every table, facts, `extra`) and `<name>.md` (one section per
    table, then the facts); return their paths. For benchmarks with several tables."""
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    rows = [{"table": t, **r} for t, rs in tables.items() for r in rs]
    json_path.write_text(json.dumps({"benchmark": name, "environment": env, "settings": settings, "tables": tables,
                                     "rows": rows, "facts": facts, **(extra or {})}, indent=1, default=float) + "\n")
    lines = [f"# {name}", "", " | ".join(f"{k}: {v}" for k, v in env.items()), "",
             "settings: " + "; ".join(f"{k} {v}" for k, v in settings.items()), ""]
    for t, rs in tables.items():
        lines += [f"## {t}", ""] + markdown_table(rs, columns[t]) + [""]
    lines += ["## facts", "", "```", json.dumps(facts, indent=1, default=float), "```"]
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def with_random_encoders(settings):
    """The settings' CLIP and LPIPS architectures with random weights: the same FLOPs and time where the
    pretrained files are absent (cost measurements only)."""
    enc = settings.tune.encoders
    enc = replace(enc, clip=tuple(replace(c, pretrained=None, checkpoint_uri=None) for c in enc.clip),
                  lpips=replace(enc.lpips, backbone_weights_uri=None, random_backbone=True))
    return replace(settings, tune=replace(settings.tune, encoders=enc))


def evaluate_slots(backbone, slots: str) -> None:
    """AniFaceGAN: its FiLM-SIREN at the samples that hit a manifold ("hits", the default) or at every (ray,
    manifold) slot ("all", as the official code: the same outputs for more work). Other backbones: "hits" only."""
    render = getattr(getattr(backbone, "config", None), "render", None)
    if not hasattr(render, "skip_empty_samples"):
        if slots != "hits":
            raise SystemExit(f"--slots {slots}: {type(backbone).__name__} has no manifold slots to evaluate")
        return
    backbone.config = replace(backbone.config, render=replace(render, skip_empty_samples=slots == "hits"))


def hit_fraction(backbone, render: Callable[[], torch.Tensor]) -> float | None:
    """AniFaceGAN: the share of its (ray, manifold) slots plus background samples at which `render()` (images
    (B, 3, H, W)) evaluates the FiLM-SIREN: 1 when every slot is evaluated (the official code, `--slots all`),
    else the share that hits a manifold, which depends on the weights (and sets what skipping saves). Counted
    with a forward pre-hook on the SIREN: points per call vs slots per render. None for other backbones."""
    render_settings = getattr(getattr(backbone, "config", None), "render", None)
    if not hasattr(render_settings, "num_levels"):
        return None
    evaluated = []
    hook = backbone.generator.siren.register_forward_pre_hook(lambda _m, a: evaluated.append(a[0].shape[0] * a[0].shape[1]))
    try:
        with torch.no_grad():
            image = render()
    finally:
        hook.remove()
    return sum(evaluated) / (image.shape[0] * image.shape[-1] * image.shape[-2] * (render_settings.num_levels + 1))
