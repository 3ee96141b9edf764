"""All sub-commands, collected for `pipeline.cli`."""
from __future__ import annotations

from pipeline.gallery.command import gallery
from pipeline.prepare_command import prepare
from pipeline.run_command import run, status, validate
from pipeline.tune_command import tune

ALL: list = [prepare, run, validate, status, tune, gallery]
