"""Shared pytest helpers: the adplay availability check."""

from __future__ import annotations

import shutil

import pytest

ADPLAY = shutil.which("adplay")

#: Skips a test when the reference player adplay is not on PATH; use together
#: with ``@pytest.mark.adplay`` so ``-m "not adplay"`` can deselect it too.
needs_adplay = pytest.mark.skipif(ADPLAY is None, reason="adplay not on PATH")


@pytest.fixture
def adplay_path() -> str:
    """Path of the adplay executable; skips the test when there is none."""
    if ADPLAY is None:
        pytest.skip("adplay not on PATH")
    return ADPLAY
