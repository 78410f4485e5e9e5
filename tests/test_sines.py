"""Tests for the sine tracker's building blocks: partner pairing and the track matcher."""

from __future__ import annotations

import numpy as np

from wav2vgm.methods.base import greedy_match
from wav2vgm.methods.sines import SinesMethod, pair_partners


def test_pair_partners_loudest_fitting_partial_once_in_channel_order():
    # frame 0: channels 0 and 1 both at 100 Hz; spare partials 300 Hz (loud) and 200 Hz
    # frame 1: channel 0 silent, channel 1 at 110 Hz; 330.5 Hz is 0.15% off 3x, 341 Hz 3.3% off
    base = np.array([[100.0, 100.0], [0.0, 110.0]])
    hz = np.array([[300.0, 200.0], [341.0, 330.5]])
    amp = np.array([[0.5, 0.3], [0.4, 0.2]])
    mult1, amp1 = pair_partners(base, hz, amp)
    assert mult1[0].tolist() == [3, 2]          # channel 0 takes the louder partial, 1 the other
    assert np.allclose(amp1[0], [0.5, 0.3])
    assert mult1[1].tolist() == [-1, 3]          # a silent channel takes nothing; 341 Hz does not fit
    assert np.allclose(amp1[1], [0.0, 0.2])


def test_pair_partners_ignores_missing_partials_and_reaches_the_big_multipliers():
    base = np.array([[100.0]])
    mult1, _ = pair_partners(base, np.array([[1500.0, 1200.0]]), np.array([[0.0, 0.1]]))
    assert mult1.tolist() == [[12]]              # 1500 Hz has no amplitude; 12x is register 10
    mult1, _ = pair_partners(base, np.array([[1500.0]]), np.array([[0.1]]))
    assert mult1.tolist() == [[15]]


def test_greedy_match_cheapest_pairs_first_and_never_an_infinite_one():
    inf = np.inf
    cost = np.array([[1.0, 0.5, inf],
                     [0.2, inf, inf],
                     [inf, inf, inf]])
    assert greedy_match(cost).tolist() == [1, 0, -1]
    assert greedy_match(np.full((2, 3), inf)).tolist() == [-1, -1, -1]
    assert greedy_match(np.zeros((0, 4))).tolist() == [-1] * 4


def test_tracker_keeps_a_gliding_partial_on_its_channel():
    sm = SinesMethod(n_voices=4)
    freqs = np.fft.rfftfreq(4096, 1 / 44100)
    mag = np.full((12, freqs.size), 1e-6)
    for i in range(12):                                   # 440 Hz gliding up 20 cents a frame
        f = 440.0 * 2 ** (20 * i / 1200)
        k = int(np.argmin(np.abs(freqs - f)))
        mag[i, k - 1:k + 2] = [0.3, 0.5, 0.3]
        k2 = int(np.argmin(np.abs(freqs - 3000.0)))       # and a steady partial
        mag[i, k2 - 1:k2 + 2] = [0.1, 0.2, 0.1]
    out = sm.process(mag, freqs)
    on = out.amp2 > 0
    assert on.sum(axis=1).tolist() == [2] * 12
    assert (on == on[0]).all()                            # the same two channels every frame
