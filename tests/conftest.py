"""Shared pytest helpers: the adplay availability check, the benchmarks module."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

# one BLAS thread, as the `wav2vgm` command asks, before numpy loads: the benchmark checks
# pin every thread to one core, where spinning BLAS threads would slow them
from wav2vgm.threads import one_blas_thread

one_blas_thread()

import pytest  # noqa: E402

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


@pytest.fixture(scope="session")
def bench_run():
    """``benchmarks/run.py`` as a module (its clips, helpers and oracles)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
    spec = importlib.util.spec_from_file_location("benchmarks_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
