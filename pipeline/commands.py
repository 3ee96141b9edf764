"""All sub-commands, collected for `pipeline.cli`."""
from __future__ import annotations

ALL: list = []
