"""Speed and memory targets, measured (deselected by default: ``python -m pytest -m benchmark``).

They reuse ``benchmarks/run.py`` (the same clips, the same pinning to one
core), so the figures in the README and these checks are one measurement.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.benchmark


def test_default_method_converts_100x_faster_than_real_time_on_one_core(bench_run):
    run = bench_run
    with run._speed_clip() as (tmp, src), run._one_core():
        run.convert_timed(src, tmp / "warm.vgm", "model")              # model load
        seconds = run.convert_timed(src, tmp / "out.vgm", "model", repeats=5)
    print(f"60 s clip: {seconds:.3f} s, {60 / seconds:.0f}x real time")   # shown with -rP
    assert seconds < 0.6, (f"the 60 s clip took {seconds:.2f} s, {60 / seconds:.0f}x real time "
                           f"(the bar: 100x)")


@pytest.mark.parametrize("method", ["model", "sines"])
def test_memory_does_not_grow_with_the_input(method, tmp_path, bench_run):
    """Audio is streamed in blocks: 20 minutes peak at most 150 MB above 1 minute."""
    run = bench_run
    peaks = []
    for minutes in (1, 20):
        src = tmp_path / f"m{minutes}.flac"
        run._long_clip(src, minutes)
        peaks.append(run.peak_memory_mb(src, tmp_path / "o.vgm", method))
    assert peaks[1] - peaks[0] < 150, (f"peak memory {peaks[0]:.0f} MB (1 min) -> "
                                       f"{peaks[1]:.0f} MB (20 min)")
