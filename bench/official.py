"""This project's AniFaceGAN renderer and the official implementation, side by side in one process.

    python -m bench.official --official-dir /path/to/AniFaceGAN          # 64², forward and forward+backward
    python -m bench.official --official-dir DIR --resolution 32 --repeats 1 --out-dir /tmp/x   # toy size

The official code (github.com/YueWuHKUST/AniFaceGAN, MIT) is imported from `--official-dir` only; nothing of it
is in this project. Both generators are built with the same architecture (the official training curriculum
`SPATIALSIRENBASELINEGRAM_deform` and the inference settings of its `render.py`); the official initialisation
draws the random weights (`--seed`), and this project's backbone loads the official modules' state dicts through
its own strict loader (`Backbone.load_part`), which is how users load the official checkpoints. Both then render
the same frames (same codes, same camera) and the images and depths are compared.

Two measurements, each a best of `--repeats` interleaved runs (official, ours, official, ours, ...) after one
warm-up of each:
  forward           a render without gradients. Official: its inference path (`generate_points`, then the
                    generator's `forward` with precomputed frequencies, which evaluates the FiLM-SIREN in blocks
                    of 5,000 points per frame, as `render.py` does). Ours: `AniFaceGAN.render_official`.
  forward+backward  a render with gradients to every generator weight (deformation frozen in both), then
                    `image.sum().backward()`. Official: its training path (frequencies computed inside, all points
                    at once). Ours: `render_official` with gradients.
FLOPs: torch's FlopCounterMode (matmul-like ops only). Each ratio is FLOP/s ÷ a same-process 2048² fp32 matmul;
`speedup` = official seconds ÷ our seconds for the same frames.

Import shims (the official modules import some packages at the top that the render path never uses): where
`matplotlib` is not installed, an empty stand-in module is put in `sys.modules` before the import. The official
code needs no CUDA op: every op on its render path is plain PyTorch, and its device is set to the CPU here.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import math
import sys
import time
import types
from pathlib import Path

import torch

from artmator.model import load_backbone
from bench.common import (count_flops, environment, evaluate_slots, hit_fraction, matmul_cpu_flops_per_second,
                          matmul_flops_per_second, write_results)

# The official inference settings (`render.py`'s options) that its generator reads from `metadata`.
OFFICIAL_RENDER_OPTIONS = {
    "levels_start": 23, "levels_end": 8, "num_steps": 24, "fov": 12, "ray_start": 0.88, "ray_end": 1.12,
    "h_stddev": 0, "v_stddev": 0, "sample_dist": "gaussian", "lock_view_dependence": True, "white_back": False,
    "last_back": False, "clamp_mode": "softplus", "rgb_clamp_mode": "widen_sigmoid", "nerf_noise": 0,
    "delta_final": 1e10, "use_alpha": True, "alpha_delta": 0.04,
}
# Modules the official files import at the top but never use on the render path.
UNUSED_IMPORTS = ("matplotlib", "matplotlib.pyplot")


class Official:
    """The official generator and deformation network, imported from a checkout, on the CPU."""

    def __init__(self, official_dir: Path, seed: int):
        self.shims = import_shims()
        sys.path.insert(0, str(official_dir))
        try:
            curriculums = importlib.import_module("curriculums")
            siren = importlib.import_module("siren.siren")
            generators = importlib.import_module("generators.generators_MPI_learn_hd")
        finally:
            sys.path.remove(str(official_dir))
        self.metadata = curriculums.extract_metadata(curriculums.SPATIALSIRENBASELINEGRAM_deform, 0)
        torch.manual_seed(seed)
        gen = generators.ImplicitGenerator3d(siren.SPATIALSIRENMULTI_NEW, self.metadata["latent_dim"], **self.metadata)
        gen.set_device(torch.device("cpu"))
        self.generator = gen.eval()
        # render.py: SPATIAL_SIREN_DEFORM(input_dim=7, z_dim=64+80, output_dim=7)
        self.deform = siren.SPATIAL_SIREN_DEFORM(input_dim=7, z_dim=64 + 80, output_dim=7).eval().requires_grad_(False)

    def render(self, z_id, z_exp, noise, yaw, pitch, resolution: int, inference: bool):
        """yaw, pitch: (B,) official radians -> image (B, 3, H, W) in [-1, 1], depth (B, 1, H, W)."""
        meta = {**self.metadata, **OFFICIAL_RENDER_OPTIONS, "img_size": resolution,
                "h_mean": math.pi / 2, "v_mean": math.pi / 2}
        g = self.generator
        points, back, levels, origins, dirs, pitch, yaw, _ = g.generate_points(
            z_id.shape[0], z_id.device, pitch=pitch[:, None], yaw=yaw[:, None], **meta)
        freq = phase = None
        if inference:
            freq, phase = g.siren.mapping_network(torch.cat([z_id, noise], dim=1))
        _, output, *_ = g.forward(z_id, z_exp, noise, points, back, levels, origins, dirs, pitch, yaw, False,
                                  self.deform, 1, meta, freq=freq, phase=phase, stage_forward_flag=inference)
        image, depth = output[0], output[1]
        return image, depth


def import_shims() -> list[str]:
    """Empty stand-ins for the official code's unused top-level imports that are not installed here."""
    added = []
    for name in UNUSED_IMPORTS:
        root = name.split(".")[0]
        if name in sys.modules:
            continue
        if root not in added and importlib.util.find_spec(root) is not None:
            continue                                  # installed: the official code gets the real one
        sys.modules[name] = types.ModuleType(name)
        added.append(name)
    return added


def build(official_dir: Path, seed: int, deform_weights: Path | None):
    """The official modules and our backbone holding exactly their weights (loaded strictly, our loader).
    `deform_weights`: a deformation checkpoint (the official `dif.pth`) for both, else the random one."""
    official = Official(official_dir, seed)
    ours = load_backbone("anifacegan")
    ours.load_part("generator", official.generator.state_dict(), source="official generator (in process)")
    if deform_weights:
        official.deform.load_state_dict(torch.load(deform_weights, map_location="cpu", weights_only=True))
        ours.load_weights({"deform": str(deform_weights)})
    else:
        ours.load_part("deform", official.deform.state_dict(), source="official deformation network (in process)")
    ours.eval()
    return official, ours


def inputs(batch: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    yaw = math.pi / 2 + (torch.rand(batch, generator=g) - 0.5) * 0.5      # within ±0.25 rad of frontal
    pitch = math.pi / 2 + (torch.rand(batch, generator=g) - 0.5) * 0.3
    return {"z_id": torch.randn(batch, 80, generator=g), "z_exp": torch.randn(batch, 64, generator=g) * 0.5,
            "noise": torch.randn(batch, 80, generator=g), "yaw": yaw, "pitch": pitch}


def interleaved_best(fns: dict[str, callable], repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Best wall time and best process CPU time of each callable over `repeats` rounds that run them one after
    another (after a warm-up). On a shared machine the CPU time is the steadier of the two (it excludes time
    spent waiting for a core); with one thread it is the compute time."""
    for fn in fns.values():
        fn()
    wall = {name: float("inf") for name in fns}
    cpu = dict(wall)
    for _ in range(repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name] = min(wall[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    return wall, cpu


def run(official_dir: Path, resolution: int, batch: int, repeats: int, seed: int, modes: list[str],
        deform_weights: Path | None = None, out_dir: Path | None = None, name: str | None = None,
        compile_backend: str | None = None) -> list[dict]:
    official, ours = build(official_dir, seed, deform_weights)
    every_slot = copy.copy(ours)                  # the same modules and weights, its own render settings
    evaluate_slots(every_slot, "all")
    x = inputs(batch, seed + 1)
    args = (x["z_id"], x["z_exp"], x["noise"], x["yaw"], x["pitch"], resolution)
    # counted eagerly: a compiled chunk runs the SIREN without its module hooks
    hits = hit_fraction(ours, lambda: ours.render_official(*args, psi=1.0).image)
    if compile_backend:                           # compiled on the agreement renders below (not timed)
        ours.set_compile(True, compile_backend)
        every_slot.set_compile(True, compile_backend)

    def render_with(backbone):
        def render():
            r = backbone.render_official(*args, psi=1.0)
            return r.image, r.depth
        return render

    ours_render, ours_dense = render_with(ours), render_with(every_slot)

    with torch.no_grad():
        img_o, depth_o = official.render(*args, inference=True)
        img_m, depth_m = ours_render()
        img_d, depth_d = ours_dense()
    agreement = {"max_abs_image_diff": max((img_o - img_m).abs().max().item(), (img_o - img_d).abs().max().item()),
                 "max_abs_depth_diff": max((depth_o - depth_m).abs().max().item(),
                                           (depth_o - depth_d).abs().max().item()),
                 "image_std": img_o.std().item(), "hit_fraction": hits}
    print(f"agreement at {resolution}²: image {agreement['max_abs_image_diff']:.2e}, "
          f"depth {agreement['max_abs_depth_diff']:.2e} (image std {agreement['image_std']:.3f}); "
          f"FiLM-SIREN at {agreement['hit_fraction']:.1%} of the slots", flush=True)

    def fwd(fn):
        def call():
            with torch.no_grad():
                fn()
        return call

    def fwd_bwd(fn, params):
        def call():
            for p in params:
                p.grad = None
            image, _ = fn()
            image.sum().backward()
        return call

    official.generator.requires_grad_(True)
    ours.generator.requires_grad_(True)
    ours_params = list(ours.generator.parameters())
    cases = {
        "forward": {"official": fwd(lambda: official.render(*args, inference=True)),
                    "ours, every slot": fwd(ours_dense), "ours": fwd(ours_render)},
        "forward+backward": {
            "official": fwd_bwd(lambda: official.render(*args, inference=False), list(official.generator.parameters())),
            "ours, every slot": fwd_bwd(ours_dense, ours_params), "ours": fwd_bwd(ours_render, ours_params)},
    }
    matmul = matmul_flops_per_second(torch.device("cpu"))
    matmul_cpu = matmul_cpu_flops_per_second()
    rows = []
    for mode in modes:
        fns = cases[mode]
        flops = {impl: count_flops(fn) for impl, fn in fns.items()}
        seconds, cpu = interleaved_best(fns, repeats)
        for impl in fns:
            achieved = flops[impl] / seconds[impl]
            rows.append({"mode": mode, "implementation": impl, "resolution": resolution, "batch": batch,
                         "gflop": flops[impl] / 1e9, "seconds": seconds[impl], "gflops_per_s": achieved / 1e9,
                         "ratio_to_matmul": achieved / matmul,
                         "speedup_vs_official": seconds["official"] / seconds[impl], "cpu_seconds": cpu[impl],
                         "cpu_ratio_to_matmul": flops[impl] / cpu[impl] / matmul_cpu,
                         "cpu_speedup_vs_official": cpu["official"] / cpu[impl]})
            r = rows[-1]
            print(f"{mode:17s} {impl:8s}: {r['gflop']:.1f} GFLOP in {r['seconds']:.3f} s = {r['gflops_per_s']:.1f} "
                  f"GFLOP/s, {r['ratio_to_matmul']:.3f}× matmul, {r['speedup_vs_official']:.2f}× official", flush=True)
    matmul_after = matmul_flops_per_second(torch.device("cpu"))
    env = environment(torch.device("cpu")) | {
        "matmul_gflops_per_s_before": round(matmul / 1e9, 1), "matmul_gflops_per_s_after": round(matmul_after / 1e9, 1),
        "matmul_cpu_time_gflops_per_s": round(matmul_cpu / 1e9, 1), "deform_weights": str(deform_weights or "random"),
        "repeats": repeats, "ours_compiled": compile_backend or "no", "official_commit": _git_commit(official_dir), "import_shims": ",".join(official.shims) or "none",
        **{k: f"{v:.3g}" for k, v in agreement.items()}}
    notes = ("Same architecture, same random generator weights (official initialisation, seed "
             f"{seed}, loaded strictly into ours), deformation weights as in the environment line, same codes and camera, psi 1. "
             "'ours': the FiLM-SIREN only at samples that hit a manifold (hit_fraction of the slots, environment "
             "line; it depends on the weights); 'ours, every slot': at every slot, as the official code (equal "
             "work). forward: no gradients (official: "
             "its render.py inference path); forward+backward: gradients to all generator weights (official: its "
             "training path). FLOPs: FlopCounterMode (matmul-like ops). ratio_to_matmul = FLOP/s ÷ same-process "
             "2048² fp32 matmul (before-value); speedup_vs_official = official seconds ÷ seconds. Best of "
             f"{repeats} interleaved runs after a warm-up. cpu_*: the same with process CPU time (matmul too), "
             "steadier on a shared machine.")
    write_results(name or "official_render_cpu", rows, env,
                  ["mode", "implementation", "resolution", "batch", "gflop", "seconds", "gflops_per_s",
                   "ratio_to_matmul", "speedup_vs_official", "cpu_seconds", "cpu_ratio_to_matmul",
                   "cpu_speedup_vs_official"], notes=notes, out_dir=out_dir)
    return rows


def _git_commit(path: Path) -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official-dir", type=Path, required=True,
                   help="a checkout of github.com/YueWuHKUST/AniFaceGAN (outside this project)")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=1, help="frames rendered together")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", nargs="+", choices=["forward", "forward+backward"],
                   default=["forward", "forward+backward"])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--deform-weights", type=Path, default=None,
                   help="deformation checkpoint for both (default: the checkout's checkpoints/dif.pth when present, "
                        "so expressions really move points; else random)")
    p.add_argument("--random-deform", action="store_true", help="random deformation weights even if dif.pth exists")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="ours with its hot paths through torch.compile (default backend inductor)")
    p.add_argument("--out-dir", type=Path, default=None)
    p.add_argument("--name", default=None)
    a = p.parse_args(argv)
    if not (a.official_dir / "siren" / "siren.py").is_file():
        p.error(f"{a.official_dir} is not a checkout of the official AniFaceGAN repository (no siren/siren.py)")
    if a.threads:
        torch.set_num_threads(a.threads)
    deform = a.deform_weights
    if deform is None and not a.random_deform and (a.official_dir / "checkpoints" / "dif.pth").is_file():
        deform = a.official_dir / "checkpoints" / "dif.pth"
    run(a.official_dir.resolve(), a.resolution, a.batch, a.repeats, a.seed, a.modes, deform, a.out_dir, a.name,
        a.compile)


if __name__ == "__main__":
    main()
