"""All sub-commands, collected for `pipeline.cli`."""
from __future__ import annotations

from pipeline.gallery.command import gallery
from pipeline.run_command import run, status, validate
from pipeline.tune_command import tune

ALL: list = [run, validate, status, tune, gallery]
