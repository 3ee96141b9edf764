"""Commits that need no tuning: re-render from the stored delta (`rendered`) and metadata refresh (`refreshed`).

Both start from the painting's current commit, write only what changes into a new version folder, refer to the
rest where it lies, and commit a new marker (`OutputStore.commit`): the old commit stays whole and readable
until then. `RenderActor` loads the backbone once (no encoders, no face analyzer); a refresh loads no model at
all (`refresh_batch` is a plain Ray Data task). `run` uses them for rows whose render inputs or metadata changed,
`artmator render` for re-rendering committed paintings with new settings.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator

import numpy as np
import torch

from artmator.model.delta import apply_delta, decode_delta, delta_latent
from artmator.model.render import RenderConfig
from artmator.pipeline.actor import (ActorSpec, REPORT_COLUMNS, _Metrics, _note_attempt, _with_device, _with_holder,
                                     claimed_row, commit_marker, committed_meanwhile, committed_row, failed_row)
from artmator.pipeline.claims import Claimed, ClaimLost, Claims, holding, painting_claims
from artmator.pipeline.config_schema import decode
from artmator.pipeline.errors import classify, with_retries
from artmator.pipeline.inputs import face_scorer
from artmator.pipeline.layout import DELTA, INPUT, METADATA_FILES, MODEL_CARD, RESULT, TUNED_FILES, Commit, Fingerprints
from artmator.pipeline.painting import png_tensor, records_of, render_files, result_document, result_flags
from artmator.pipeline.provenance import model_card
from artmator.pipeline.settings import BackboneSettings, JobSettings, load_backbone_only, resolve_expressions
from artmator.pipeline.settings import settings_from_json
from artmator.pipeline.storage import OutputStore


class ChangedError(Exception):
    """The painting was committed again after this run planned it: the plan no longer holds."""


def current_commit(store: OutputStore, painting_id: str, plan: dict) -> Commit:
    """The commit the plan was made against; ChangedError when another commit replaced it meanwhile."""
    commit = store.read_commit(painting_id)
    if commit is None or commit.version != plan.get("current"):
        raise ChangedError(f"{painting_id} was committed again (or removed) after this run planned it; "
                           "rerun to plan it anew")
    return commit


def render_config(render_inputs: dict, speed: RenderConfig) -> RenderConfig:
    """The RenderConfig of recorded render inputs (strictly decoded; settings an older artmator recorded and this
    one no longer has are left out), with this process's settings for what the record leaves out: the speed-only
    ones (batching, chunks)."""
    known = {f.name for f in dataclasses.fields(RenderConfig)}
    values = {k: v for k, v in render_inputs["render"].items() if k in known}
    names = render_inputs["expressions"]
    return decode(RenderConfig, {**values, "expressions": None if names is None else list(names)}, base=speed)


# ---------------------------------------------------------------------------------------------- re-render

class RenderActor:
    """Callable class for `map_batches`: re-renders committed paintings from their deltas (backbone loaded once)."""

    def __init__(self, spec: ActorSpec):
        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.settings: JobSettings = _with_device(settings_from_json(spec.settings_json))
        self.backbone = with_retries(lambda: load_backbone_only(self.settings, spec.storage_options))
        self.store = OutputStore(spec.out_uri, spec.storage_options)
        self.scorer = face_scorer(self.settings.device)
        self.claims = painting_claims(self.store, spec.run_id, spec.claim_ttl_s)
        self.metrics = _Metrics()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        if self.spec.threads:
            torch.set_num_threads(self.spec.threads)   # per calling thread (see TuneActor.__call__)
        rows = []
        for pid, plan in zip(batch["painting_id"], batch["plan"]):
            row = render_and_commit(str(pid), json.loads(plan), self.backbone, self.settings, self.store,
                                    self.spec, self.scorer, self.claims)
            self.metrics.record(row)
            rows.append(row)
        return {c: [r[c] for r in rows] for c in REPORT_COLUMNS}


def render_and_commit(painting_id: str, plan: dict, backbone, settings: JobSettings, store: OutputStore,
                      spec: ActorSpec, scorer=None, claims: Claims | None = None) -> dict:
    """Re-render one committed painting from its stored delta with the plan's render inputs and commit it, under
    the painting's claim (`claims`: the process's; made from `spec` when None).

    The delta and the tuned input are kept where they lie; renders and result.json are new (tuning's numbers and
    flags carried over, face metrics and flags of the new renders added)."""
    start = time.perf_counter()
    attempt = _note_attempt(store, spec.run_id, painting_id)
    if spec.max_attempts and attempt > spec.max_attempts:
        return failed_row(painting_id, "actor_died", f"its actor died during each of {attempt - 1} attempts")
    claims = claims or painting_claims(store, spec.run_id, spec.claim_ttl_s)
    with _claimed(painting_id, start) as outcome, holding(claims, painting_id, "render") as claim:
        if (done := committed_meanwhile(store, painting_id, plan)) is not None:
            return {**done, "seconds_total": time.perf_counter() - start}
        commit = current_commit(store, painting_id, plan)
        delta = decode_delta(with_retries(lambda: store.read_file(painting_id, DELTA, commit)),
                             source=f"{painting_id}/{DELTA}")
        result = json.loads(with_retries(lambda: store.read_file(painting_id, RESULT, commit)))
        face = (png_tensor(with_retries(lambda: store.read_file(painting_id, INPUT, commit)))
                if INPUT in commit.files else None)
        render_inputs = plan["inputs"]["render"]
        render = render_config(render_inputs, settings.render)
        expressions = resolve_expressions(backbone, render_inputs["expressions"], spec.storage_options,
                                          unsupported="skip")     # a run's own were checked before it started
        device = next(backbone.parameters()).device
        latent = {k: v.to(device) for k, v in delta_latent(delta).items()}
        pose = result.get("pose") or {}
        yaw = float(pose.get("yaw_deg", delta.metadata.yaw_deg))
        pitch = float(pose.get("pitch_deg", delta.metadata.pitch_deg))
        wants_face = render_inputs.get("face_metrics", settings.face_metrics)
        files, rendered = render_files(apply_delta(backbone, delta), latent, yaw, pitch, render, expressions,
                                       scorer() if scorer is not None and wants_face else None, face,
                                       painting_id)
        tuned, _ = records_of(result)
        meta = plan["inputs"]["metadata"]
        files[RESULT] = result_document(painting_id, tuned, rendered, meta["metadata"], meta["extra"])
        files[MODEL_CARD] = model_card(json.loads(files[RESULT]), meta.get("weights_license"))
        keep = {rel: commit.files[rel] for rel in TUNED_FILES if rel in commit.files}
        marker = commit_marker(spec, plan, "rendered", result_flags(files),
                               {"render": time.perf_counter() - start}, commit.doc)
        outcome["claim"] = claim
        written = with_retries(lambda: store.commit(painting_id, files, marker,
                                                     Fingerprints.from_dict(plan["fingerprints"]), keep, claim))
        return {**committed_row(painting_id, "rendered", json.loads(files[RESULT]), written["version"]),
                "seconds_total": time.perf_counter() - start}
    return outcome["row"]


@contextlib.contextmanager
def _claimed(painting_id: str, start: float) -> Iterator[dict]:
    """Turns a re-render's or refresh's exception into its report row (`outcome["row"]`): claimed by another
    run, changed since planned, or failed with its kind."""
    outcome: dict = {}
    try:
        yield outcome
    except (Claimed, ClaimLost) as exc:
        row = claimed_row(painting_id, _with_holder(exc, outcome.get("claim")) if isinstance(exc, ClaimLost) else exc)
    except ChangedError as exc:
        row = failed_row(painting_id, "changed", str(exc))
    except Exception as exc:  # noqa: BLE001 - one painting's failure never stops the batch
        row = failed_row(painting_id, *classify(exc))
    else:
        return
    outcome["row"] = {**row, "seconds_total": time.perf_counter() - start}


# ------------------------------------------------------------------------------------------------ refresh

def refresh_batch(batch: dict[str, np.ndarray], spec: ActorSpec) -> dict[str, list]:
    """Ray Data task (no actor, no model): refresh every painting of the batch."""
    store = OutputStore(spec.out_uri, spec.storage_options)
    claims = painting_claims(store, spec.run_id, spec.claim_ttl_s)
    metrics = _Metrics()
    rows = []
    try:
        for pid, plan in zip(batch["painting_id"], batch["plan"]):
            row = refresh_and_commit(str(pid), json.loads(plan), store, spec, claims)
            metrics.record(row)
            rows.append(row)
    finally:
        if claims is not None:
            claims.close()
    return {c: [r[c] for r in rows] for c in REPORT_COLUMNS}


def refresh_and_commit(painting_id: str, plan: dict, store: OutputStore, spec: ActorSpec,
                       claims: Claims | None = None) -> dict:
    """Rewrite one committed painting's result.json with the plan's metadata (and record its new image stamp),
    under the painting's claim; every other file is kept where it lies."""
    start = time.perf_counter()
    claims = claims or painting_claims(store, spec.run_id, spec.claim_ttl_s)
    with _claimed(painting_id, start) as outcome, holding(claims, painting_id, "refresh") as claim:
        if (done := committed_meanwhile(store, painting_id, plan)) is not None:
            return {**done, "seconds_total": time.perf_counter() - start}
        commit = current_commit(store, painting_id, plan)
        result = json.loads(with_retries(lambda: store.read_file(painting_id, RESULT, commit)))
        tuned, rendered = records_of(result)
        meta = plan["inputs"]["metadata"]
        files = {RESULT: result_document(painting_id, tuned, rendered, meta["metadata"], meta["extra"])}
        files[MODEL_CARD] = model_card(json.loads(files[RESULT]), meta.get("weights_license"))
        keep = {rel: entry for rel, entry in commit.files.items() if rel not in METADATA_FILES}
        marker = commit_marker(spec, plan, "refreshed", result_flags(files),
                               {"refresh": time.perf_counter() - start}, commit.doc)
        outcome["claim"] = claim
        written = with_retries(lambda: store.commit(painting_id, files, marker,
                                                     Fingerprints.from_dict(plan["fingerprints"]), keep, claim))
        return {**committed_row(painting_id, "refreshed", json.loads(files[RESULT]), written["version"]),
                "seconds_total": time.perf_counter() - start}
    return outcome["row"]


def backbone_settings(record: dict) -> BackboneSettings:
    """BackboneSettings from a marker's `backbone` record (`flow.backbone_record`), strictly decoded."""
    return decode(BackboneSettings, record)
