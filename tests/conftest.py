"""Shared test fixtures: paths to the copied reference fixtures, tiny seeded backbones."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
ANIFACEGAN_FIXTURES = FIXTURES / "anifacegan"

torch.set_num_threads(min(2, torch.get_num_threads()))

# Debian's Chromium, driven by Playwright without any browser download; flags keep it off the network.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session (Playwright's sync API allows one instance per thread)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def anifacegan_fixtures() -> Path:
    return ANIFACEGAN_FIXTURES


@pytest.fixture(scope="session")
def tiny_backbone():
    from artmator.model import load_backbone

    return load_backbone("tiny", seed=0)
