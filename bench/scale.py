"""Scale: validating a large manifest, and the resume scan of a large output on an S3 API (moto on 127.0.0.1).

    python -m bench.scale                          # 10,000 manifest rows and 10,000 committed paintings
    python -m bench.scale --rows 200 --paintings 50 --no-index-demo    # toy size (smoke test)

Manifest: a synthetic manifest of `--rows` valid rows (id, s3:// image URI, pose, title) is validated
(`validate_manifest`), split into tasks (`split_manifest`), and read + validated + split from a Parquet file
(`load_manifest`, the path `artmator run` takes).

Resume scan: a moto S3 server is started in this process on 127.0.0.1 (fake credentials); `--paintings`
committed paintings are uploaded under s3://<bucket>/out/paintings/<id>/ (each: `_COMMITTED.json` with a real
marker, `delta.safetensors` and `result.json`, a few bytes each: the scan's cost is per object, not per byte) with
one concurrent s3fs `pipe` of all paths. Then timed, each from a cold cache:
  listing          one recursive listing of paintings/ (`fs.find`, paginated list_objects_v2, 1,000 keys a page)
  committed_ids()  the listing only (what marks a painting committed: its marker exists)
  committed()      the listing + every marker read in one batched concurrent `cat` (what `artmator run` uses to
                   match markers against the run's config hash)
Index demo (unless `--no-index-demo`): the fix proposed when the scan is too slow — a flat index prefix with one
empty object per committed painting, keyed `out/_commits/<config_hash>/<painting_id>`, written after the marker.
Resume then lists one key per painting (not 3+) and reads no markers: the config hash is in the key.

moto is not S3: its listing and GET costs per key are much higher than S3's (S3 lists 1,000 keys in ~50-100 ms
per page). The ratios between the variants, measured side by side here, are the portable result.
"""
from __future__ import annotations

import argparse
import json
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
from artmator.pipeline.storage import MARKER_NAME, OutputStore

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


def marker(pid: str) -> bytes:
    return json.dumps({"painting_id": pid, "run_id": "bench", "config_hash": CONFIG_HASH,
                       "committed_at": "2026-01-01T00:00:00+00:00",
                       "files": {"delta.safetensors": {"bytes": 8, "sha256": "0" * 64},
                                 "result.json": {"bytes": 2, "sha256": "0" * 64}}}, sort_keys=True).encode()


def bench_s3(paintings: int, index_demo: bool) -> tuple[list[dict], dict]:
    from moto.server import ThreadedMotoServer
    import s3fs

    import logging

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
        root = f"{bucket}/out/paintings"
        ids = [f"painting-{i:06d}" for i in range(paintings)]
        objects = {}
        for pid in ids:
            objects[f"{root}/{pid}/{MARKER_NAME}"] = marker(pid)
            objects[f"{root}/{pid}/delta.safetensors"] = b"\0" * 8
            objects[f"{root}/{pid}/result.json"] = b"{}"
        start = time.perf_counter()
        fs.pipe(objects)
        upload = time.perf_counter() - start
        info["objects"] = len(objects)
        rows.append({"what": "upload (one concurrent s3fs pipe)", "n": len(objects), "seconds": upload,
                     "detail": f"{len(objects) / upload:.0f} objects/s"})

        store = OutputStore(out, options)
        store.fs.invalidate_cache()
        start = time.perf_counter()
        listed = store.fs.find(store.paintings_root)
        rows.append({"what": "listing of paintings/ (fs.find)", "n": len(listed), "seconds": time.perf_counter() - start,
                     "detail": f"{-(-len(listed) // 1000)} pages"})
        start = time.perf_counter()
        got_ids = store.committed_ids()
        rows.append({"what": "committed_ids() (listing only)", "n": len(got_ids), "seconds": time.perf_counter() - start,
                     "detail": "ok" if len(got_ids) == paintings else f"expected {paintings}"})
        start = time.perf_counter()
        got = store.committed(CONFIG_HASH)
        rows.append({"what": "committed(config_hash) (listing + marker reads)", "n": len(got),
                     "seconds": time.perf_counter() - start,
                     "detail": "ok" if len(got) == paintings else f"expected {paintings}"})

        if index_demo:
            index = {f"{bucket}/out/_commits/{CONFIG_HASH}/{pid}": b"" for pid in ids}
            start = time.perf_counter()
            fs.pipe(index)
            rows.append({"what": "index demo: upload _commits/<hash>/<id>", "n": len(index),
                         "seconds": time.perf_counter() - start, "detail": "one empty object per painting"})
            fs.invalidate_cache()
            start = time.perf_counter()
            keys = fs.find(f"{bucket}/out/_commits/{CONFIG_HASH}")
            found = {k.rsplit("/", 1)[1] for k in keys}
            rows.append({"what": "index demo: resume scan = listing _commits/<hash>/", "n": len(found),
                         "seconds": time.perf_counter() - start,
                         "detail": "ok" if len(found) == paintings else f"expected {paintings}"})
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return rows, info


def run(rows: int, paintings: int, index_demo: bool, out_dir: Path | None = None, name: str = "scale_cpu") -> list[dict]:
    results = bench_manifest(rows)
    for r in results:
        print(r)
    s3_rows, info = bench_s3(paintings, index_demo)
    for r in s3_rows:
        print(r)
    results += s3_rows
    import moto
    import s3fs

    env = environment(torch.device("cpu")) | {"manifest_rows": rows, "paintings": paintings,
                                              "moto": moto.__version__, "s3fs": s3fs.__version__, **info}
    notes = ("Goal: resume scan of 10,000 paintings ≤ 30 s. moto server in this process on 127.0.0.1 (not real "
             "S3: per-key list/GET costs are far higher); times are one cold call each.")
    write_results(name, results, env, ["what", "n", "seconds", "detail"], notes=notes, out_dir=out_dir)
    return results


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--paintings", type=int, default=10_000)
    p.add_argument("--no-index-demo", action="store_true")
    p.add_argument("--out-dir", type=Path, default=None)
    a = p.parse_args(argv)
    run(a.rows, a.paintings, not a.no_index_demo, a.out_dir)


if __name__ == "__main__":
    main()
