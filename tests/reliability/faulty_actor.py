"""Test-only fault injection: a TuneActor whose process dies like a native crash or an OOM kill.

`FaultyTuneActor` replaces `pipeline.job.TuneActor` in a child `artmator run` (see test_faults.py); the production
actor holds no hook. Which (painting, attempt) pairs die is deterministic (`fault_exit_decision`), with the fraction
and seed from this module's environment variables, read in the worker.
"""
from __future__ import annotations

import hashlib
import json
import os

from artmator.pipeline.actor import TuneActor, _note_attempt
from artmator.pipeline.manifest import task_from_row

FRACTION_ENV = "ARTMATOR_TEST_FAULT_FRACTION"
SEED_ENV = "ARTMATOR_TEST_FAULT_SEED"


def fault_exit_decision(painting_id: str, attempt: int, fraction: float, seed: int = 0) -> bool:
    """Whether the process dies at this (painting, attempt): deterministic, for about `fraction` of the pairs."""
    digest = hashlib.sha256(f"{seed}/{painting_id}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2.0 ** 64 < fraction


class FaultyTuneActor(TuneActor):
    def __call__(self, batch):
        fraction = float(os.environ.get(FRACTION_ENV) or 0.0)
        seed = int(os.environ.get(SEED_ENV) or 0)
        for text in batch["task"]:
            pid = task_from_row(json.loads(text)).painting_id
            attempt = self._attempts(pid) + 1
            if fraction and fault_exit_decision(pid, attempt, fraction, seed):
                _note_attempt(self.store, self.spec.run_id, pid)   # the attempt that dies counts, as a crash would
                os._exit(1)
        return super().__call__(batch)

    def _attempts(self, painting_id: str) -> int:
        folder = f"{self.store.run_dir(self.spec.run_id)}/attempts/{painting_id}"
        self.store.fs.invalidate_cache(folder)
        try:
            return len(self.store.fs.find(folder))
        except FileNotFoundError:
            return 0
