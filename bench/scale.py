"""Scale: validating a large manifest, and planning a large catalog on an S3 API (moto on 127.0.0.1).

    python -m bench.scale                          # 10,000 manifest rows and 10,000 committed paintings
    python -m bench.scale --rows 200 --paintings 50    # toy size (smoke test)

Manifest: a synthetic manifest of `--rows` valid rows (id, s3:// image URI, pose, title) is validated
(`validate_manifest`), split into tasks (`split_manifest`), and read + validated + split from a Parquet file
(`load_manifest`, the path `artmator run` takes).

Plan: a moto S3 server is started in this process; `--paintings` images and committed paintings are uploaded in
the real layout (`pipeline.layout`: files under paintings/<id>/<version>/, markers under commits/<id>/ named by
the fingerprints a plan of the same manifest computes). Then timed, each from a cold cache:
  scan()           one listing of commits/: every painting's fingerprints, no marker read
  committed()      the listing + every marker read (what the skip decision cost before markers named their
                   fingerprints)
  plan             `make_plan` of the whole manifest: manifest read, image stamps (one listing of images/),
                   scan, decide: all skipped; then with every title changed: all refreshed

moto is not S3: its listing and GET costs per key are much higher than S3's (S3 lists 1,000 keys in ~50-100 ms
per page). The ratios between the variants, measured side by side here, are the portable result.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bench.common import environment, write_results
from artmator.pipeline.manifest import load_manifest, split_manifest, validate_manifest
from artmator.pipeline.storage import OutputStore

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
CONFIG_HASH = "0123456789abcdef"


def manifest_table(rows: int) -> pa.Table:
    ids = [f"painting-{i:06d}" for i in range(rows)]
    return pa.table({
        "painting_id": ids,
        "image_uri": [f"s3://museum-bucket/images/{pid}.jpg" for pid in ids],
        "yaw_deg": [float((i * 7) % 61 - 30) for i in range(rows)],
        "pitch_deg": [float((i * 3) % 21 - 10) for i in range(rows)],
        "title": [f"Portrait no. {i}" for i in range(rows)],
    })


def bench_manifest(rows: int) -> list[dict]:
    table = manifest_table(rows)
    out = []
    start = time.perf_counter()
    problems = validate_manifest(table)
    out.append({"what": "validate_manifest", "n": rows, "seconds": time.perf_counter() - start,
                "detail": f"{len(problems)} problems"})
    start = time.perf_counter()
    tasks, _ = split_manifest(table)
    out.append({"what": "split_manifest (validate + tasks)", "n": rows, "seconds": time.perf_counter() - start,
                "detail": f"{len(tasks)} tasks"})
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "manifest.parquet")
        pq.write_table(table, path)
        start = time.perf_counter()
        tasks, problems = load_manifest(path)
        out.append({"what": "load_manifest (parquet read + validate + tasks)", "n": rows,
                    "seconds": time.perf_counter() - start, "detail": f"{len(tasks)} tasks, {len(problems)} problems"})
    return out


def bench_s3(paintings: int) -> tuple[list[dict], dict]:
    """Commit `paintings` paintings on moto S3 in the real layout (markers named by the fingerprints a plan of
    the same manifest computes), then time the resume scan and whole plans."""
    from moto.server import ThreadedMotoServer
    import s3fs

    import logging

    from artmator.pipeline import changes, layout
    from artmator.pipeline.job import RunConfig, make_plan
    from artmator.pipeline.settings import quick_settings

    logging.getLogger("werkzeug").setLevel(logging.ERROR)   # moto's server logs every request otherwise
    saved = {k: os.environ.get(k) for k in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": f"http://{host}:{port}"}}
    rows, info = [], {}
    try:
        fs = s3fs.S3FileSystem(**options)
        bucket = f"bench-{uuid.uuid4().hex[:10]}"
        fs.mkdir(bucket)
        out = f"s3://{bucket}/out"
        table = manifest_table(paintings).set_column(
            1, "image_uri", pa.array([f"s3://{bucket}/images/painting-{i:06d}.png" for i in range(paintings)]))
        images = {f"{bucket}/images/painting-{i:06d}.png": f"img{i}".encode() for i in range(paintings)}
        start = time.perf_counter()
        fs.pipe(images)
        with fs.open(f"{bucket}/manifest.parquet", "wb") as f:
            pq.write_table(table, f)
        manifest = f"s3://{bucket}/manifest.parquet"
        settings = quick_settings()
        config = RunConfig(manifest_uri=manifest, out_uri=out, settings=settings, storage_options=options)
        tasks, _ = load_manifest(manifest, options)
        stamps = changes.image_stamps([t.image_uri for t in tasks], options)
        decider = changes.Decider(settings, changes.base_identity(settings), stamps, options)
        objects = {}
        version = "v000001-abcdef"
        for task in tasks:
            inputs, fingerprints = decider.inputs(task)
            sha = hashlib.sha256(images[task.image_uri[5:]]).hexdigest()
            fingerprints = fingerprints._replace(image=sha[:16])
            pid = task.painting_id
            files = {"delta.safetensors": b"\0" * 8, "result.json": b"{}"}
            for rel, data in files.items():
                objects[f"{bucket}/out/paintings/{pid}/{version}/{rel}"] = data
            doc = {"painting_id": pid, "version": version, "run_id": "bench", "config_hash": CONFIG_HASH,
                   "inputs": inputs, "fingerprints": fingerprints._asdict(),
                   "files": {rel: layout.file_entry(f"{version}/{rel}", d).as_json() for rel, d in files.items()}}
            objects[f"{bucket}/out/commits/{pid}/{layout.marker_name(version, fingerprints)}"] = layout.marker_bytes(doc)
        fs.pipe(objects)
        upload = time.perf_counter() - start
        info["objects"] = len(objects) + len(images)
        rows.append({"what": "upload (images, committed paintings; concurrent s3fs pipe)", "n": info["objects"],
                     "seconds": upload, "detail": f"{info['objects'] / upload:.0f} objects/s"})

        store = OutputStore(out, options)
        store.fs.invalidate_cache()
        start = time.perf_counter()
        scan = store.scan()
        rows.append({"what": "scan(): listing of commits/ (every fingerprint, no marker read)", "n": len(scan.current),
                     "seconds": time.perf_counter() - start,
                     "detail": "ok" if len(scan.current) == paintings else f"expected {paintings}"})
        store.fs.invalidate_cache()
        start = time.perf_counter()
        got = store.committed()
        rows.append({"what": "committed(): listing + every marker read", "n": len(got),
                     "seconds": time.perf_counter() - start,
                     "detail": "ok" if len(got) == paintings else f"expected {paintings}"})
        for what, change in (("plan, nothing changed", None), ("plan, every title changed", "title")):
            if change:
                changed = table.set_column(table.schema.get_field_index("title"), "title",
                                           pa.array([f"Retitled {i}" for i in range(paintings)]))
                with fs.open(f"{bucket}/manifest.parquet", "wb") as f:
                    pq.write_table(changed, f)
            store.fs.invalidate_cache()
            start = time.perf_counter()
            counts = make_plan(config, store).counts()
            expected = "refresh" if change else "skip"
            rows.append({"what": f"{what} (manifest read, image stamps listed, scan, decide)", "n": paintings,
                         "seconds": time.perf_counter() - start,
                         "detail": "ok" if counts[expected] == paintings else f"unexpected {counts}"})
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return rows, info


def run(rows: int, paintings: int, out_dir: Path | None = None, name: str = "scale_cpu") -> list[dict]:
    results = bench_manifest(rows)
    for r in results:
        print(r)
    s3_rows, info = bench_s3(paintings)
    for r in s3_rows:
        print(r)
    results += s3_rows
    import moto
    import s3fs

    env = environment(torch.device("cpu")) | {"manifest_rows": rows, "paintings": paintings,
                                              "moto": moto.__version__, "s3fs": s3fs.__version__, **info}
    notes = ("Goal: `plan` and the skip decision for 10,000 paintings ≤ 30 s. moto server in this process on "
             "127.0.0.1 (not real S3: per-key list/GET costs are far higher); times are one cold call each.")
    write_results(name, results, env, ["what", "n", "seconds", "detail"], notes=notes, out_dir=out_dir)
    return results


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--paintings", type=int, default=10_000)
    p.add_argument("--out-dir", type=Path, default=None)
    a = p.parse_args(argv)
    run(a.rows, a.paintings, a.out_dir)


if __name__ == "__main__":
    main()
