"""The level oracle of ``benchmarks/run.py stairs``: what it plays instead of TL steps.

The README and docs/design.md quote its figures, so it must play the written
levels where there is nothing to ramp, and ramps where there are steps.
"""

from __future__ import annotations

import numpy as np
import pytest

from wav2vgm.opl3 import registers as R
from wav2vgm.vgm import read_vgm, write_vgm

RATE = 49716


def _stepping_tone(path, tls) -> object:
    """A 440 Hz sine on channel 0 (operator 2 alone) whose TL takes ``tls`` in turn, one
    value every 70 VGM samples; returns the parsed VGM."""
    fnum, block = (int(v) for v in R.hz_to_fnum(440.0))
    silent = R.Operator(mult=1, tl=63, rr=8)
    events = [(0, R.REG_NEW, 1)]
    for op, o in ((0, silent), (1, R.Operator(mult=1, tl=tls[0], rr=8))):
        for base, v in zip(R.OPERATOR_BASES, o.register_bytes()):
            events.append((64, R.operator_register(base, 0, op), v))
    events += [(64, R.channel_register(R.CH_OUT_FB_CNT, 0), R.c0_value(0, 1)),
               (64, R.channel_register(R.CH_FNUM_LO, 0), fnum & 0xFF),
               (64, R.channel_register(R.CH_KEY_BLOCK_FNUM_HI, 0), R.b0_value(fnum, block, True))]
    t = 64
    for tl in tls[1:]:
        t += 70
        events.append((t, R.operator_register(R.OP_KSL_TL, 0, 1), tl))
    write_vgm(str(path), events, end_samples=t + 2000)
    return read_vgm(str(path))


def _far_power_db(x: np.ndarray) -> float:
    """Power more than 2 kHz above the tone while its level steps (from 10 to 60 ms),
    dB re the whole (44.1 kHz mono)."""
    x = x[441:2646]
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    f = np.fft.rfftfreq(x.size, 1 / 44100)
    return float(10 * np.log10(spec[f > 2440].sum() / spec.sum()))


@pytest.mark.parametrize("falling_only", [False, True])
def test_ramps_one_sample_long_play_what_is_written(bench_run, tmp_path, falling_only):
    vgm = _stepping_tone(tmp_path / "t.vgm", [10, 14, 18, 12, 20, 16, 24])
    written = bench_run._play_on(vgm)
    assert np.any(written)
    np.testing.assert_array_equal(
        bench_run._oracle_levels(vgm, ramp=1, falling_only=falling_only), written)


def test_ramps_replace_the_steps_and_their_splatter(bench_run, tmp_path):
    vgm = _stepping_tone(tmp_path / "t.vgm", [0, 4] * 20)             # 3 dB up and down
    written = bench_run._play_on(vgm)
    ramped = bench_run._oracle_levels(vgm, ramp=138, falling_only=False)
    assert _far_power_db(ramped) < _far_power_db(written) - 10         # measured: -50 / -29 dB


def test_a_level_that_only_falls_ramps_all_the_way(bench_run, tmp_path):
    vgm = _stepping_tone(tmp_path / "t.vgm", list(range(0, 40)))       # 0.75 dB a step, falling
    ramped = bench_run._oracle_levels(vgm, ramp=138, falling_only=False)
    assert not np.array_equal(ramped, bench_run._play_on(vgm))
    # all of it is what envelope decays could ramp
    np.testing.assert_array_equal(bench_run._oracle_levels(vgm, ramp=138, falling_only=True), ramped)


def test_falling_ramps_leave_rising_steps(bench_run, tmp_path):
    vgm = _stepping_tone(tmp_path / "t.vgm", list(range(40, 0, -1)))     # rising in steps
    written = bench_run._play_on(vgm)
    np.testing.assert_array_equal(bench_run._oracle_levels(vgm, ramp=138, falling_only=True),
                                  written)
    assert not np.array_equal(bench_run._oracle_levels(vgm, ramp=138, falling_only=False), written)
