"""Mesh benchmark: how big the published mesh.glb is, what it costs, and how far it is from the renders.

    python -m bench.mesh                                   # tiny demo prior, 3 identities, grids 64/96/128
    python -m bench.mesh --preset anifacegan --official-root … --device cuda --render-resolution 256
    python -m bench.mesh --identities 1 --mesh-resolutions 24 --frames 2 --render-resolution 24   # toy size

For each latent and grid size the mesh is extracted and encoded exactly as a commit does (`model.mesh`), read
back from the GLB bytes (pygltflib), and ray-cast (trimesh + Embree) with the renderer's own camera at the
turntable poses of `RenderConfig` (±20° yaw). Against the backbone's render at the same pose it reports the
silhouette IoU (render opacity > 0.5 vs mesh hit), colour PSNR and mean absolute error (0-255) where both show
the head, and the depth error there. Extraction time is measured beside the time of rendering the same
turntable, in one process (`extract_vs_turntable`).

Expressions (`--expressions`, default happiness; the backbone must have them): at the finest grid the mesh gets
its morph targets as a commit writes them (`expression_morphs`), and the GLB's target, applied at weight 1 as a
viewer does, is compared with the backbone's render of that expression, beside the unmorphed mesh against the
same render (what a viewer without morph targets would show). Reported per expression: bytes the targets add,
vertices stored, the largest shift, and both comparisons.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import RESULTS, environment, write_tables
from artmator.model import load_backbone
from artmator.model.mesh import MeshConfig, encode_glb, expression_morphs, extract_mesh, morph_shift
from artmator.model.render import RenderConfig, render_turntable, turntable_angles


def glb_arrays(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (V, 3), faces (F, 3), sRGB colours (V, 3) in [0, 1]) of a GLB written by `encode_glb`."""
    import pygltflib

    doc = pygltflib.GLTF2.load_from_bytes(data)
    blob = doc.binary_blob()
    primitive = doc.meshes[0].primitives[0]

    def read(index: int, dtype, width: int) -> np.ndarray:
        accessor = doc.accessors[index]
        view = doc.bufferViews[accessor.bufferView]
        return np.frombuffer(blob, dtype=dtype, count=accessor.count * width,
                             offset=view.byteOffset + (accessor.byteOffset or 0)).reshape(-1, width)

    index_type = np.uint16 if doc.accessors[primitive.indices].componentType == pygltflib.UNSIGNED_SHORT else np.uint32
    faces = read(primitive.indices, index_type, 1).reshape(-1, 3).astype(np.int64)
    vertices = read(primitive.attributes.POSITION, np.float32, 3)
    linear = read(primitive.attributes.COLOR_0, np.uint16, 4)[:, :3] / 65535.0
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    return vertices, faces, srgb


def glb_morph(data: bytes, name: str) -> np.ndarray:
    """The GLB's vertices with morph target `name` applied at weight 1 (sparse accessor decoded as glTF says)."""
    import pygltflib

    doc = pygltflib.GLTF2.load_from_bytes(data)
    blob, mesh = doc.binary_blob(), doc.meshes[0]
    vertices, _, _ = glb_arrays(data)
    accessor = doc.accessors[mesh.primitives[0].targets[mesh.extras["targetNames"].index(name)]["POSITION"]]
    sparse = accessor.sparse
    itype = np.uint16 if sparse.indices.componentType == pygltflib.UNSIGNED_SHORT else np.uint32
    where = np.frombuffer(blob, itype, sparse.count, doc.bufferViews[sparse.indices.bufferView].byteOffset)
    vtype = np.int16 if accessor.componentType == pygltflib.SHORT else np.float32
    values = np.frombuffer(blob, vtype, sparse.count * 3, doc.bufferViews[sparse.values.bufferView].byteOffset)
    delta = np.zeros_like(vertices)
    delta[where] = (np.maximum(values / 32767.0, -1.0) if accessor.normalized else values).reshape(-1, 3)
    return vertices + delta


def cast(vertices, faces, colours, origin: np.ndarray, directions: np.ndarray):
    """First hit of each ray: (hit (R,), colour (R, 3), distance (R,))."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    locations, ray_index, tri_index = mesh.ray.intersects_location(
        np.repeat(origin[None], len(directions), 0), directions, multiple_hits=False)
    hit = np.zeros(len(directions), bool)
    hit[ray_index] = True
    colour = np.zeros((len(directions), 3))
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[tri_index], locations)
    colour[ray_index] = (bary[..., None] * colours[faces[tri_index]]).sum(1)
    distance = np.zeros(len(directions))
    distance[ray_index] = np.linalg.norm(locations - origin, axis=1)
    return hit, colour, distance


def compare(backbone, latent, glb: bytes, render: RenderConfig, save: Path | None = None,
            vertices: np.ndarray | None = None) -> dict:
    """Mesh vs render at every turntable pose, averaged over poses (`vertices`: instead of the GLB's own)."""
    from artmator.model.anifacegan import rays as R   # this benchmark measures the AniFaceGAN family's camera
    from artmator.model.camera import degrees_to_official

    own, faces, colours = glb_arrays(glb)
    vertices = own if vertices is None else vertices
    yaws, pitches = turntable_angles(render, 0.0, 0.0)
    res = render.resolution
    per = []
    panels = []
    for yaw, pitch in zip(yaws.tolist(), pitches.tolist()):
        with torch.no_grad():
            out = backbone.render_latent(latent, yaw, pitch, res, psi=render.psi)
        rays = R.make_rays(degrees_to_official(torch.tensor([yaw])), degrees_to_official(torch.tensor([pitch])), res,
                           backbone.config.render.fov_deg)
        hit, colour, distance = cast(vertices, faces, colours, rays.origins[0].double().numpy(),
                                     rays.directions[0].double().numpy())
        image = ((out.image[0].permute(1, 2, 0).reshape(-1, 3).cpu().double() + 1) / 2).clamp(0, 1).numpy()
        opaque = (out.opacity[0, 0].flatten() > 0.5).cpu().numpy()
        both = opaque & hit
        error = np.abs(image[both] - colour[both])
        mse = float((error ** 2).mean()) if both.any() else float("nan")
        depth = out.depth[0, 0].flatten().cpu().double().numpy()
        per.append({"iou": float(both.sum() / max(1, (opaque | hit).sum())),
                    "psnr_db": float(10 * np.log10(1 / mse)) if mse > 0 else float("inf"),
                    "mae_255": float(error.mean() * 255) if both.any() else float("nan"),
                    "depth_err_mm": float(np.abs(depth[both] - distance[both]).mean() * 1000) if both.any()
                    else float("nan")})
        if save is not None and len(panels) < 3 and (not panels or abs(yaw) > 15 or yaw == 0):
            mesh_image = np.where(hit[:, None], colour, 0.5)
            panels.append(np.concatenate([image, mesh_image, np.abs(image - mesh_image)], axis=0)
                          .reshape(3 * res, res, 3))
    if save is not None and panels:
        from PIL import Image

        grid = np.concatenate(panels, axis=1)
        Image.fromarray((grid * 255).round().astype(np.uint8)).resize(
            (grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(save)
    return {k: float(np.mean([p[k] for p in per])) for k in per[0]} | {"worst_iou": min(p["iou"] for p in per)}


def run(a) -> dict:
    device = torch.device(a.device)
    torch.manual_seed(0)
    weights = {}
    if a.official_root:
        from artmator.model.registry import backbone_entry

        weights = backbone_entry(a.preset).weights_from_root(a.official_root)
    backbone = load_backbone(a.preset, weights, device=device, demo_prior=not weights)
    render = RenderConfig(resolution=a.render_resolution, turntable_frames=a.frames, expressions=())
    rows = []
    out_dir = a.out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    for identity in range(a.identities):
        latent = backbone.sample_latent(1, torch.Generator().manual_seed(identity))
        start = time.perf_counter()
        render_turntable(backbone, latent, render)
        turntable_s = time.perf_counter() - start
        for resolution in a.mesh_resolutions:
            start = time.perf_counter()
            mesh = extract_mesh(backbone, latent, MeshConfig(resolution=resolution), psi=render.psi)
            glb = encode_glb(mesh)
            extract_s = time.perf_counter() - start
            save = out_dir / f"{a.name}_compare.png" if identity == 0 and resolution == max(a.mesh_resolutions) else None
            metrics = compare(backbone, latent, glb, render, save)
            row = {"identity": identity, "grid": resolution, "vertices": len(mesh.vertices), "faces": len(mesh.faces),
                   "glb_kb": len(glb) / 1024, "extract_s": extract_s, "turntable_s": turntable_s,
                   "extract_vs_turntable": extract_s / turntable_s, **metrics}
            rows.append(row)
            print(f"identity {identity} grid {resolution}: {row['faces']} faces, {row['glb_kb']:.0f} kB, "
                  f"{extract_s:.2f} s ({row['extract_vs_turntable']:.2f}x the {a.frames}-frame turntable); IoU "
                  f"{metrics['iou']:.3f}, PSNR {metrics['psnr_db']:.1f} dB, MAE {metrics['mae_255']:.1f}/255, "
                  f"depth {metrics['depth_err_mm']:.2f} mm")
    morph_rows = expression_rows(a, backbone, render, out_dir) if a.expressions and backbone.supports_expressions else []
    summary = []
    for resolution in a.mesh_resolutions:
        mine = [r for r in rows if r["grid"] == resolution]
        summary.append({"grid": resolution, **{k: float(np.mean([r[k] for r in mine])) for k in
                                               ("faces", "glb_kb", "extract_s", "extract_vs_turntable", "iou",
                                                "worst_iou", "psnr_db", "mae_255", "depth_err_mm")}})
    columns = ["grid", "faces", "glb_kb", "extract_s", "extract_vs_turntable", "iou", "worst_iou", "psnr_db",
               "mae_255", "depth_err_mm"]
    settings = {"preset": a.preset, "weights": "official" if a.official_root else (
        "demo prior (if the preset has one)"), "identities": a.identities,
                "render_resolution": a.render_resolution, "turntable_frames": a.frames,
                "yaw_range_deg": render.turntable_half_range_deg}
    morph_columns = ["identity", "expression", "target_kb", "stored_vertices", "max_shift", "iou_morphed",
                     "iou_unmorphed", "psnr_morphed", "psnr_unmorphed", "mae_morphed", "mae_unmorphed"]
    write_tables(a.name, environment(device), settings,
                 {"by grid": summary, "per identity": rows, "expression morph targets": morph_rows},
                 {"by grid": columns, "per identity": ["identity", *columns], "expression morph targets": morph_columns},
                 {"compare_image": f"{a.name}_compare.png (rows: render, mesh, |difference|; columns: poses)"},
                 out_dir=a.out_dir)
    return {"summary": summary, "rows": rows, "morphs": morph_rows}


def expression_rows(a, backbone, render: RenderConfig, out_dir: Path) -> list[dict]:
    """Per identity and expression, at the finest grid: the morph target against the expression's renders."""
    import pygltflib

    grid = max(a.mesh_resolutions)
    codes = {name: backbone.load_expression(name) for name in a.expressions}
    out = []
    for identity in range(a.identities):
        latent = backbone.sample_latent(1, torch.Generator().manual_seed(identity))
        mesh = extract_mesh(backbone, latent, MeshConfig(resolution=grid), psi=render.psi)
        plain = encode_glb(mesh)
        morphed = expression_morphs(backbone, latent, mesh, codes)
        glb = encode_glb(morphed)
        doc = pygltflib.GLTF2.load_from_bytes(glb)
        for index, (name, code) in enumerate(codes.items()):
            target = backbone.with_expression(latent, code)
            save = out_dir / f"{a.name}_{name}_compare.png" if identity == 0 else None
            with_morph = compare(backbone, target, glb, render, save, vertices=glb_morph(glb, name))
            without = compare(backbone, target, glb, render)
            stored = doc.accessors[doc.meshes[0].primitives[0].targets[index]["POSITION"]].sparse.count
            row = {"identity": identity, "expression": name, "target_kb": (len(glb) - len(plain)) / 1024 / len(codes),
                   "stored_vertices": f"{stored} / {len(mesh.vertices)}",
                   "max_shift": float(morph_shift(morphed, name).max()),
                   "iou_morphed": with_morph["iou"], "iou_unmorphed": without["iou"],
                   "psnr_morphed": with_morph["psnr_db"], "psnr_unmorphed": without["psnr_db"],
                   "mae_morphed": with_morph["mae_255"], "mae_unmorphed": without["mae_255"]}
            out.append(row)
            print(f"identity {identity} {name}: +{row['target_kb']:.0f} kB, {row['stored_vertices']} vertices stored, "
                  f"max shift {row['max_shift']:.4f}; vs its renders IoU {without['iou']:.3f} -> {with_morph['iou']:.3f}, "
                  f"PSNR {without['psnr_db']:.2f} -> {with_morph['psnr_db']:.2f} dB, MAE {without['mae_255']:.2f} -> "
                  f"{with_morph['mae_255']:.2f} (unmorphed -> morphed)")
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--official-root", default=None, help="Official AniFaceGAN checkout (weights) for --preset anifacegan.")
    p.add_argument("--identities", type=int, default=3)
    p.add_argument("--mesh-resolutions", type=int, nargs="+", default=[64, 96, 128])
    p.add_argument("--render-resolution", type=int, default=128)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--expressions", nargs="*", default=["happiness"], help="Morph targets to compare (none: skip).")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out-dir", type=Path, default=None)
    p.add_argument("--name", default=None)
    a = p.parse_args(argv)
    a.name = a.name or f"mesh_{a.preset}_{torch.device(a.device).type}"
    return run(a)


if __name__ == "__main__":
    main()
