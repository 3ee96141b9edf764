"""A process that takes a claim, for the claim tests' races and take-overs (run as `python -m`).

    python -m tests.pipeline.claim_racer '{"uri": ..., "options": {...}, "run_id": ..., "subject": ...,
                                          "ttl_s": ..., "start_at": <unix time>, "mode": "race" | "hold"}'

race: wait until `start_at`, try to take the subject, print `won <generation>` or `claimed`, hold a won claim
for `hold_s`, then release it. hold: take it, print `held <generation>`, then obey lines on stdin: `check`
prints `ok` or `lost: <why>`; `exit` ends the process at once without releasing (a dead holder).
"""
from __future__ import annotations

import json
import os
import sys
import time

import fsspec

from artmator.pipeline.claims import Claimed, ClaimLost, Claims


def main() -> None:
    args = json.loads(sys.argv[1])
    fs, folder = fsspec.core.url_to_fs(args["uri"], **args.get("options", {}))
    claims = Claims(fs, folder, args["run_id"], ttl_s=args.get("ttl_s", 30.0),
                    clock_skew_s=args.get("skew_s", 0.5))
    if args["mode"] == "race":
        time.sleep(max(0.0, args["start_at"] - time.time()))
        try:
            claim = claims.take(args["subject"], "race")
        except Claimed:
            print("claimed", flush=True)
            return
        print(f"won {claim.generation}", flush=True)
        time.sleep(args.get("hold_s", 3.0))
        claim.release()
        return
    claim = claims.take(args["subject"], "hold")
    print(f"held {claim.generation}", flush=True)
    for line in sys.stdin:
        if line.strip() == "check":
            try:
                claim.check()
                print("ok", flush=True)
            except ClaimLost as exc:
                print(f"lost: {exc.reason}", flush=True)
        elif line.strip() == "exit":
            os._exit(0)


if __name__ == "__main__":
    main()
