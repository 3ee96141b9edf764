"""All sub-commands, collected for `pipeline.cli`."""
from __future__ import annotations

from artmator.pipeline.gallery.command import gallery
from artmator.pipeline.incremental_command import plan, render
from artmator.pipeline.prepare_command import prepare
from artmator.pipeline.run_command import run, status, validate
from artmator.pipeline.tune_command import tune

ALL: list = [prepare, validate, plan, run, render, status, tune, gallery]
