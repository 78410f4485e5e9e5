"""Thread settings that must come before numpy loads (this module imports nothing heavy).

numpy's BLAS starts a thread per core, each spinning after every small matrix product: the
converter gains nothing from them (the 60 s speed clip took 0.97-1.01 s wall either way on
2 cores, with 1.7 s of CPU against 0.9 s, 2026-12-05), batch workers (``--jobs``) would
fight over the cores, and a benchmark pinned to one core would be slowed by them.
"""

from __future__ import annotations

import os

BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread() -> None:
    """Ask numpy's BLAS for one thread, unless the user set these variables; effective
    only before numpy is first imported."""
    for var in BLAS_THREAD_VARS:
        os.environ.setdefault(var, "1")
