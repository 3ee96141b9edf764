"""All sub-commands, collected for `pipeline.cli`."""
from __future__ import annotations

from pipeline.gallery.command import gallery
from pipeline.tune_command import tune

ALL: list = [tune, gallery]
