"""Soak: `artmator prepare` against failing servers — an IIIF image server whose images stall, answer 500, drop
the connection, or fail twice and recover, and the moto S3 server (images and outputs) stopped for a random few
seconds at a random moment and restarted — then prove every painting got one clear result, nothing hung, and a
rerun after the outage wrote one consistent output.

    python -m bench.soak_outage                          # 3 rounds of each
    python -m bench.soak_outage --rounds 1 --paintings 6

Each round of the IIIF part serves a IIIF v3 manifest whose canvases point at images with a random mix of
behaviours (always at least one of each) and runs `prepare` with `--fetch-timeout-s`; it counts paintings whose
one report row is right (ok for ok/flaky, `storage` naming the cause for the others), requests per failing image
(retries) and seconds. Each round of the outage part stops the S3 server once the analysis is under way, for a
random 3-10 s, restarts it (same process, same data), waits for prepare (bounded), then reruns it: every painting
`ok`, manifest, report and review page naming one run, one run's images. Writes
bench/results/soak_outage_cpu.{json,md}; exit status 0 only when every round passed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BEHAVIOURS = ("ok", "flaky", "stall", "err500", "drop")
CAUSES = {"stall": "(the server stalled)", "err500": "the server answered HTTP 500", "drop": "the connection failed"}
RUN_KEY = b"artmator.prepare_run"


class FaultyImages(BaseHTTPRequestHandler):
    """/ok/* answers; /stall/* never does (sleeps past any timeout); /err500/* is always 500; /drop/* closes
    the connection; /flaky/* is 500 twice, then answers. `requests` counts every request per path."""

    image = b""
    requests: dict[str, int] = {}
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_GET(self):
        with self.lock:
            n = self.requests[self.path] = self.requests.get(self.path, 0) + 1
        kind = self.path.split("/")[1]
        if kind == "stall":
            time.sleep(60)
            return
        if kind == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "err500" or (kind == "flaky" and n <= 2):
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.image)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(self.image)

    do_HEAD = do_GET


def serve_faulty(image: bytes) -> tuple[ThreadingHTTPServer, str]:
    FaultyImages.image, FaultyImages.requests = image, {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FaultyImages)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def iiif_manifest(base: str, kinds: list[str]) -> dict:
    """A IIIF Presentation 3 Manifest with one canvas per entry of `kinds` (image at /<kind>/<i>.jpg)."""
    canvases = []
    for i, kind in enumerate(kinds):
        cid = f"{base}/canvas/{i}"
        canvases.append({"id": cid, "type": "Canvas", "width": 1100, "height": 900, "label": {"en": [kind]},
                         "items": [{"id": f"{cid}/page", "type": "AnnotationPage", "items": [{
                             "id": f"{cid}/anno", "type": "Annotation", "motivation": "painting", "target": cid,
                             "body": {"id": f"{base}/{kind}/{i}.jpg", "type": "Image", "format": "image/jpeg",
                                      "width": 1100, "height": 900}}]}]})
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/manifest.json",
            "type": "Manifest", "label": {"en": ["Faults"]}, "items": canvases}


def iiif_round(work: Path, kinds: list[str], timeout_s: float) -> dict:
    import pyarrow.parquet as pq

    from artmator.pipeline.prepare import PrepareConfig, prepare
    from tests.pipeline.faces_fixtures import jpeg_bytes, whole_painting

    server, base = serve_faulty(jpeg_bytes(whole_painting()))
    (work / "manifest.json").write_text(json.dumps(iiif_manifest(base, kinds)))
    start = time.monotonic()
    try:
        summary = prepare(str(work / "manifest.json"), str(work / "out" / "faces.parquet"),
                          PrepareConfig(fetch_timeout_s=timeout_s), actors=1)
    finally:
        server.shutdown()
        server.server_close()
    seconds = time.monotonic() - start
    report = pq.read_table(summary.report_uri).to_pylist()
    right = 0
    for r in report:
        kind = r["image_uri"].split("/")[3]
        if kind in ("ok", "flaky"):
            right += r["status"] == "ok"
        else:
            right += r["status"] == "storage" and CAUSES[kind] in (r["message"] or "") and f"/{kind}/" in r["message"]
    failing = [p for p in FaultyImages.requests if p.split("/")[1] in CAUSES]
    tries = [FaultyImages.requests[p] for p in failing]
    return {"part": "iiif", "paintings": len(kinds), "rows": len(report), "right": right,
            "mix": " ".join(f"{k} {kinds.count(k)}" for k in BEHAVIOURS), "seconds": round(seconds, 1),
            "min_requests_per_failing_image": min(tries) if tries else None, "hang": False,
            "ok": right == len(kinds) == len(report)}


def outage_round(work: Path, n: int, rng: random.Random, deadline_s: float) -> dict:
    import pyarrow.parquet as pq
    import s3fs

    from artmator.pipeline.errors import classify
    from artmator.pipeline.prepare import PrepareConfig, prepare
    from tests.pipeline.faces_fixtures import jpeg_bytes, whole_painting
    from tests.reliability.conftest import Moto

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(k, v)
    moto = Moto()
    try:
        options = moto.options
        fs = s3fs.S3FileSystem(**options)
        bucket = f"soak-{uuid.uuid4().hex[:12]}"               # moto's servers in one process share their data
        fs.mkdir(bucket)
        fs.pipe({f"{bucket}/img/{i:02d}.jpg": jpeg_bytes(whole_painting()) for i in range(n)})
        (work / "catalog.csv").write_text("painting_id,image_uri\n" + "\n".join(
            f"s{i:02d},s3://{bucket}/img/{i:02d}.jpg" for i in range(n)) + "\n")
        out = f"s3://{bucket}/prep/faces.parquet"
        outcome: dict = {}

        def first():
            try:
                outcome["summary"] = prepare(str(work / "catalog.csv"), out, PrepareConfig(), options, actors=1)
            except Exception as exc:  # noqa: BLE001
                outcome["error"] = exc

        start = time.monotonic()
        thread = threading.Thread(target=first, daemon=True)
        thread.start()
        wait_first = rng.uniform(0.0, 2.0)
        while thread.is_alive() and time.monotonic() - start < 300:
            fs.invalidate_cache()
            if any(p.endswith(".jpg") for p in fs.find(f"{bucket}/prep")):
                break
            time.sleep(0.2)
        time.sleep(wait_first)
        down = rng.uniform(3.0, 10.0)
        moto.stop()
        time.sleep(down)
        moto.start_again()
        thread.join(timeout=deadline_s)
        hang = thread.is_alive()
        seconds = time.monotonic() - start
        if "error" in outcome:
            first_result = f"stopped: {classify(outcome['error'])[0]} error"
        elif "summary" in outcome:
            first_result = ", ".join(f"{v} {k}" for k, v in outcome["summary"].by_status.items())
        else:
            first_result = "still running"
        second = prepare(str(work / "catalog.csv"), out, PrepareConfig(), options, actors=1)
        fs.invalidate_cache()
        run_ids = {pq.read_schema(u.removeprefix("s3://"), filesystem=fs).metadata[RUN_KEY]
                   for u in (out, second.report_uri)}
        folders = {p.split("/")[3] for p in fs.find(f"{bucket}/prep/faces.review")} - {"_claims"}
        consistent = len(run_ids) == 1 and folders == {next(iter(run_ids)).decode()}
        return {"part": "outage", "paintings": n, "down_s": round(down, 1), "first_prepare": first_result,
                "seconds": round(seconds, 1), "hang": hang, "rerun_ok": second.ok, "consistent": consistent,
                "ok": not hang and second.ok == n and consistent}
    finally:
        try:
            moto.stop()
        except Exception:  # noqa: BLE001
            pass


COLUMNS = ["part", "paintings", "mix", "right", "down_s", "first_prepare", "seconds",
           "min_requests_per_failing_image", "rerun_ok", "consistent", "hang", "ok"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paintings", type=int, default=10)
    parser.add_argument("--fetch-timeout", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--name", default="soak_outage_cpu")
    args = parser.parse_args(argv)

    import logging

    import ray

    logging.getLogger("werkzeug").setLevel(logging.ERROR)      # moto's per-request log
    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="artmator-outage-"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"AWS_DEFAULT_REGION": "us-east-1"}})
    rows = []
    try:
        for rnd in range(1, args.rounds + 1):
            kinds = list(BEHAVIOURS) + [rng.choice(BEHAVIOURS) for _ in range(max(0, args.paintings - 5))]
            rng.shuffle(kinds)
            folder = work / f"iiif-{rnd}"
            folder.mkdir(parents=True, exist_ok=True)
            row = iiif_round(folder, kinds, args.fetch_timeout)
            rows.append(row)
            print(f"iiif   round {rnd}: {'OK' if row['ok'] else 'FAILED'}: {row['right']}/{row['paintings']} paintings "
                  f"with the right single result ({row['mix']}) in {row['seconds']:.0f} s; each failing image asked "
                  f">= {row['min_requests_per_failing_image']} times", flush=True)
            folder = work / f"outage-{rnd}"
            folder.mkdir(parents=True, exist_ok=True)
            row = outage_round(folder, args.paintings, rng, 300)
            rows.append(row)
            print(f"outage round {rnd}: {'OK' if row['ok'] else 'FAILED'}: S3 down {row['down_s']} s; first prepare "
                  f"{row['first_prepare']} after {row['seconds']:.0f} s (hang: {row['hang']}); rerun {row['rerun_ok']}"
                  f"/{row['paintings']} ok, consistent output: {row['consistent']}", flush=True)
    finally:
        ray.shutdown()
    ok = all(r["ok"] for r in rows)
    print("OK" if ok else "FAILED")
    import torch

    from bench.common import environment, write_results

    write_results(args.name, rows, {**environment(torch.device("cpu")), "cpus": os.cpu_count()}, COLUMNS,
                  notes=f"fetch timeout {args.fetch_timeout:g} s; whole paintings with a face; S3 = moto server "
                        "stopped and restarted in this process.",
                  out_dir=Path(args.out_dir) if args.out_dir else None)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
