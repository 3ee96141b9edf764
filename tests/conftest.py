"""Shared test fixtures: paths to the copied reference fixtures, tiny seeded backbones."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
ANIFACEGAN_FIXTURES = FIXTURES / "anifacegan"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def anifacegan_fixtures() -> Path:
    return ANIFACEGAN_FIXTURES


@pytest.fixture(scope="session")
def tiny_backbone():
    from model import load_backbone

    return load_backbone("tiny", seed=0)
