"""Tests for the sine tracker's building blocks: partner pairing and the track matcher."""

from __future__ import annotations

import numpy as np
import pytest

from wav2vgm.methods.base import greedy_match, greedy_match_frames
from wav2vgm.methods.sines import SinesMethod, pair_partners, shared_base


def test_pair_partners_loudest_fitting_partial_once_in_channel_order():
    # frame 0: channels 0 and 1 both at 100 Hz; spare partials 300 Hz (loud) and 200 Hz
    # frame 1: channel 0 silent, channel 1 at 110 Hz; 334 Hz is 1.2% off 3x, 341 Hz 3.3% off
    base = np.array([[100.0, 100.0], [0.0, 110.0]])
    hz = np.array([[300.0, 200.0], [341.0, 334.0]])
    amp = np.array([[0.5, 0.3], [0.4, 0.2]])
    mult1, amp1, hz1 = pair_partners(base, hz, amp)
    assert mult1[0].tolist() == [3, 2]          # channel 0 takes the louder partial, 1 the other
    assert np.allclose(amp1[0], [0.5, 0.3]) and np.allclose(hz1[0], [300.0, 200.0])
    assert mult1[1].tolist() == [-1, 3]          # a silent channel takes nothing; 341 Hz does not fit
    assert np.allclose(amp1[1], [0.0, 0.2]) and np.allclose(hz1[1], [0.0, 334.0])


def test_shared_base_splits_a_pairs_tuning_error_by_power():
    # operator 2 at 110 Hz, its partner at 334 Hz on MULT 3 (own base 111.33 Hz)
    base = np.array([[110.0, 110.0, 110.0]])
    mult1 = np.array([[3, 3, -1]])
    partner = np.array([[334.0, 334.0, 334.0]])
    amp2 = np.array([[1.0, 1.0, 1.0]])
    amp1 = np.array([[1.0, 0.1, 1.0]])
    out = shared_base(base, amp2, partner, mult1, amp1)
    cents = 1200 * np.log2(out / 110.0)
    own = 1200 * np.log2((334.0 / 3) / 110.0)
    assert cents[0, 0] == pytest.approx(own / 2, abs=0.01)    # equal power: half way
    assert 0 < cents[0, 1] < own * 0.02                          # a weak partner barely moves it
    assert out[0, 2] == 110.0                                   # unpaired: unchanged


def test_pair_partners_ignores_missing_partials_and_reaches_the_big_multipliers():
    base = np.array([[100.0]])
    mult1, _, _ = pair_partners(base, np.array([[1500.0, 1200.0]]), np.array([[0.0, 0.1]]))
    assert mult1.tolist() == [[12]]              # 1500 Hz has no amplitude; 12x is register 10
    mult1, _, _ = pair_partners(base, np.array([[1500.0]]), np.array([[0.1]]))
    assert mult1.tolist() == [[15]]


def test_greedy_match_cheapest_pairs_first_and_never_an_infinite_one():
    inf = np.inf
    cost = np.array([[1.0, 0.5, inf],
                     [0.2, inf, inf],
                     [inf, inf, inf]])
    assert greedy_match(cost).tolist() == [1, 0, -1]
    assert greedy_match(np.full((2, 3), inf)).tolist() == [-1, -1, -1]
    assert greedy_match(np.zeros((0, 4))).tolist() == [-1] * 4


def test_greedy_match_frames_is_greedy_match_on_every_frame_ties_included():
    rng = np.random.default_rng(5)
    cost = rng.integers(0, 6, size=(400, 7, 5)).astype(float)     # integer costs: many ties
    cost[rng.random(cost.shape) < 0.4] = np.inf
    links = greedy_match_frames(cost)
    for c, link in zip(cost, links):
        by_track = greedy_match(c)
        want = np.full(c.shape[0], -1)
        want[by_track[by_track >= 0]] = np.flatnonzero(by_track >= 0)
        assert link.tolist() == want.tolist()
    assert greedy_match_frames(np.zeros((0, 3, 3))).shape == (0, 3)
    assert (greedy_match_frames(np.full((2, 3, 4), np.inf)) == -1).all()


def _chirps(n_frames, freqs):
    """Magnitude frames with partials gliding at different rates, some starting late."""
    rng = np.random.default_rng(2)
    mag = np.full((n_frames, freqs.size), 1e-6)
    base = rng.uniform(200, 4000, size=10)
    rate = rng.uniform(-30, 30, size=10)
    start = rng.integers(0, n_frames // 2, size=10)
    for i in range(n_frames):
        for f0, r, s0 in zip(base, rate, start):
            if i < s0:
                continue
            k = int(np.argmin(np.abs(freqs - f0 * 2 ** (r * i / 1200))))
            level = 0.5 * (1 + (i + s0) % 3) / 3
            mag[i, k - 1:k + 2] = np.maximum(mag[i, k - 1:k + 2], [0.6 * level, level, 0.6 * level])
    return mag


def test_tracker_output_does_not_depend_on_how_frames_are_split_into_blocks():
    freqs = np.fft.rfftfreq(4096, 1 / 44100)
    mag = _chirps(40, freqs)
    whole = SinesMethod(n_voices=6).process(mag, freqs)
    sm = SinesMethod(n_voices=6)
    parts = [sm.process(mag[lo:hi], freqs) for lo, hi in ((0, 1), (1, 13), (13, 14), (14, 40))]
    for name in ("fnum", "block", "amp2", "amp1", "mult1", "mult2"):
        joined = np.concatenate([getattr(p, name) for p in parts])
        assert np.array_equal(joined, getattr(whole, name)), name
    assert (whole.amp2 > 0).sum(axis=1).max() == 6                 # more partials than channels


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


def _tones(freqs, partials, n_frames):
    """Magnitude spectra of steady partials [(f_hz, level), ...], three bins each."""
    mag = np.full((n_frames, freqs.size), 1e-6)
    for f, level in partials:
        k = int(np.argmin(np.abs(freqs - f)))
        mag[:, k - 1:k + 2] = [0.6 * level, level, 0.6 * level]
    return mag


def test_a_channel_pairs_partials_a_fraction_apart_through_its_carrier_multiplier():
    from wav2vgm.opl3 import registers as R
    freqs = np.fft.rfftfreq(4096, 1 / 44100)
    # 300 and 400 Hz: 4/3, no whole multiple -- base 100 Hz, operator 2 at x3, operator 1 at x4
    out = SinesMethod(n_voices=1).process(_tones(freqs, [(300.0, 0.5), (400.0, 0.2)], 6), freqs)
    assert out.mult2[:, 0].tolist() == [3] * 6 and out.mult1[:, 0].tolist() == [4] * 6
    assert (out.amp1[:, 0] > 0).all()
    base = R.fnum_to_hz(out.fnum[:, 0].astype(np.int64), out.block[:, 0].astype(np.int64))
    assert np.allclose(base * 3, 300.0, rtol=0.01) and np.allclose(base * 4, 400.0, rtol=0.01)
    # 300 and 600 Hz: a whole multiple, the usual multiplier stays
    out = SinesMethod(n_voices=1).process(_tones(freqs, [(300.0, 0.5), (600.0, 0.2)], 6), freqs)
    assert out.mult2[:, 0].tolist() == [1] * 6 and out.mult1[:, 0].tolist() == [2] * 6


def test_the_carrier_multiplier_never_changes_under_a_held_key():
    freqs = np.fft.rfftfreq(4096, 1 / 44100)
    # the partner of 300 Hz comes and goes: 400 Hz in the first frames, 600 Hz later;
    # the note keeps the multiplier it started with (a change would be heard as a click)
    mag = np.concatenate([_tones(freqs, [(300.0, 0.5), (400.0, 0.2)], 5),
                          _tones(freqs, [(300.0, 0.5), (600.0, 0.2)], 5)])
    whole = SinesMethod(n_voices=1).process(mag, freqs).mult2[:, 0]
    assert whole.tolist() == [1] * 10             # the usual one finds a partner in some frames
    sm = SinesMethod(n_voices=1)                  # a note held across blocks keeps its first
    parts = [sm.process(mag[:3], freqs), sm.process(mag[3:], freqs)]
    assert np.concatenate([p.mult2[:, 0] for p in parts]).tolist() == [3] * 10


def _side_lobes_all_pairs(pos, peak_db, window_bins):
    """Reference: every candidate against every other."""
    dist = np.abs(pos[:, :, None] - pos[:, None, :]) / window_bins
    with np.errstate(invalid="ignore"):
        above = peak_db[:, None, :] - peak_db[:, :, None]
        envelope = peak_db[:, None, :] - 31.5 - 18 * np.log2(np.maximum(dist, 2.5) / 2.5)
        hit = ((above > 0) & (dist < 1.5)) | ((above > 28.0) & (dist >= 1.5)
                                              & (peak_db[:, :, None] < envelope + 3.0))
    return hit.any(axis=2)


def test_side_lobes_compare_only_neighbours_yet_match_all_pairs():
    from wav2vgm.methods.sines import _side_lobes
    rng = np.random.default_rng(5)
    n, c = 400, 70
    # local maxima: at least two FFT bins apart, sub-bin offsets, levels within 60 dB
    gaps = rng.integers(2, 12, size=(n, c))
    pos = np.cumsum(gaps, axis=1) + rng.uniform(-0.5, 0.5, size=(n, c))
    peak_db = rng.uniform(-60.0, 0.0, size=(n, c)) + rng.uniform(0, 1.5, size=(n, c))
    peak_db[:, ::7] = -np.inf                                    # slots without a peak
    perm = rng.permuted(np.tile(np.arange(c), (n, 1)), axis=1)   # candidates come unsorted
    pos, peak_db = np.take_along_axis(pos, perm, 1), np.take_along_axis(peak_db, perm, 1)
    real = np.isfinite(peak_db)
    # _side_lobes takes them in frequency order with the no-peaks last (as pick_peaks
    # finds them); its answer is put back in the candidates' order
    order = np.argsort(np.where(real, pos, np.inf), axis=1, kind="stable")
    pos_s, db_s = np.take_along_axis(pos, order, 1), np.take_along_axis(peak_db, order, 1)
    got_s = _side_lobes(pos_s, db_s, window_bins=2.0, range_db=60.0)
    got = np.zeros_like(got_s)
    np.put_along_axis(got, order, got_s, axis=1)
    want = _side_lobes_all_pairs(pos, peak_db, 2.0)
    assert (got[real] == want[real]).all()
    assert want[real].any() and (~want[real]).any()              # both outcomes occur
    real_s = np.isfinite(db_s)
    assert (got_s[real_s] == np.take_along_axis(want, order, 1)[real_s]).all()


def test_factor_lookup_finds_every_factor_within_the_tolerance():
    from wav2vgm.methods.sines import _RATIO_TOL, _SORTED_FACTORS, _factor_fit, _log2_hz

    def _nearest_factor(num_hz, den_hz):       # the lookup as its callers use it: logs of Hz
        return _factor_fit(_log2_hz(num_hz) - _log2_hz(den_hz))[0]
    rng = np.random.default_rng(8)
    ratio = np.exp(rng.uniform(np.log(0.3), np.log(20.0), size=200_000))
    exact = np.argmin(np.abs(_SORTED_FACTORS[None, :] - ratio[:, None]), axis=1)
    fits = np.abs(_SORTED_FACTORS[exact] / ratio - 1) < _RATIO_TOL
    assert fits.sum() > 1000
    base_hz = np.exp(rng.uniform(np.log(20.0), np.log(6000.0), size=ratio.size))
    got = _nearest_factor(ratio * base_hz, base_hz)
    assert (got[fits] == exact[fits]).all()
    # where no factor fits, whatever the table returns does not fit either
    assert not (np.abs(_SORTED_FACTORS[got[~fits]] / ratio[~fits] - 1) < _RATIO_TOL).any()
    # the edges: no peak (0) and ratios far outside the multipliers
    assert (_nearest_factor(np.array([0.0, 1e-12, 1e6]), 440.0).tolist()
            == [0, 0, len(_SORTED_FACTORS) - 1])


def test_partials_move_towards_their_bands_power_by_at_most_6_db():
    """A tracked partial plays its mel band's power: a band holding 3x more than the partial
    alone raises it by sqrt(3), 16x is held to 6 dB, a band with exactly its power keeps
    it, half lowers it by sqrt(2), and silent partials stay silent."""
    from wav2vgm.methods.base import VoiceFrames
    from wav2vgm.methods.pursuit import _grid_index, sine_atoms
    from wav2vgm.methods.sines import BAND_MATCH_DB, match_band_power
    from wav2vgm.opl3 import registers as R

    v = VoiceFrames.empty(4, 2)
    fnum, block = R.hz_to_fnum(np.array([1000.0]), mult=1)
    v.fnum[:, 0], v.block[:, 0] = fnum[0], block[0]
    v.amp2[:, 0] = 0.5
    f_hz = R.fnum_to_hz(int(fnum[0]), int(block[0]), 1)
    alone = 0.25 * sine_atoms()[_grid_index(np.array([f_hz]))][0]        # (N_MELS,)
    power = np.stack([alone * 3, alone * 16, alone, alone * 0.5]).astype(np.float32)
    match_band_power(v, power)
    assert v.amp2[0, 0] == pytest.approx(0.5 * 3 ** 0.5, rel=1e-4)
    assert v.amp2[1, 0] == pytest.approx(0.5 * 10 ** (BAND_MATCH_DB / 20), rel=1e-4)
    assert v.amp2[2, 0] == pytest.approx(0.5, rel=1e-4)
    assert v.amp2[3, 0] == pytest.approx(0.5 / 2 ** 0.5, rel=1e-4)
    assert np.all(v.amp2[:, 1] == 0) and np.all(v.amp1 == 0)


def _lead_channels(pf_hz: np.ndarray) -> list[int]:
    """The channel the one partial of each frame plays on (a fresh 4-channel tracker)."""
    from wav2vgm.methods.sines import SinesMethod
    m = SinesMethod(n_voices=4)
    chans = m._track(pf_hz[:, None] * np.array([[1.0, 0.0]]), np.ones(len(pf_hz), np.int64))
    return [int(np.flatnonzero(row == 0)[0]) for row in chans]


def test_a_kick_drums_falling_pitch_keeps_its_channel():
    from wav2vgm.methods.sines import LEAD_MAX_HZ
    # a kick's sine falls 250 cents a frame: below LEAD_MAX_HZ each fall keeps the channel,
    # even one alone (a single step down)
    fall = 2.0 ** (-np.minimum(np.arange(8), 3) * 250 / 1200)     # falls 3 times, then holds
    once = np.where(np.arange(8) < 4, 1.0, 2.0 ** (-250 / 1200))   # falls once
    assert len(set(_lead_channels(150.0 * fall))) == 1
    assert len(set(_lead_channels(150.0 * once))) == 1
    # above it a single step is a new note (a melody's next note), on another channel
    assert len(set(_lead_channels(2000.0 * once))) == 2
    assert 150.0 < LEAD_MAX_HZ < 2000.0 * fall[-1]


def test_a_glide_keeps_its_channel_at_any_pitch_either_way():
    # 250 cents a frame for 5 frames: the loudest partial glides (the pitch it left is
    # gone, and it moved the same way the frame before or after), up or down
    steps = np.concatenate([np.zeros(2), np.arange(1, 6), np.full(3, 5)]) * 250 / 1200
    for f0, sign in ((2000.0, -1), (300.0, 1), (1000.0, 1)):
        assert len(set(_lead_channels(f0 * 2.0 ** (sign * steps)))) == 1, (f0, sign)


def test_glides_tells_a_glide_from_a_jump():
    from wav2vgm.methods.base import GLIDE_MIN_CENTS
    from wav2vgm.methods.sines import _glides
    hz = 440.0 * 2.0 ** (np.array([0, 0, 3, 6, 9, 9, 9, 14, 14], float) * 100 / 1200)
    peaks = hz[:, None]
    # frames 2-4 glide up 300 cents a frame; frame 7 jumps 500 cents once
    assert _glides(hz, peaks).tolist() == [False, True, True, True, False, False, False, False]
    # the pitch it left still sounds: not a glide
    both = np.column_stack([hz, np.roll(hz, 1)])
    assert not _glides(hz, both).any()
    assert 0 < GLIDE_MIN_CENTS < 300
    # a step of 150 cents next to one of 300 glides; next to one of 600 (a hop to another
    # harmonic, say) it does not
    for after, glides in ((300.0, True), (600.0, False)):
        hz = 440.0 * 2.0 ** (np.cumsum([0.0, 0.0, 150.0, after, 0.0, 0.0]) / 1200)
        assert _glides(hz, hz[:, None])[1] == glides, after


def test_a_fast_sweep_plays_on_one_held_channel(tmp_path):
    # 3 kHz -> 100 Hz in 1 s: about 340 cents a frame at 60 frames/s.  Keyed afresh on
    # another channel every frame until the glide rule (48 key-ons); one note now
    from wav2vgm.audio import write_wav
    from wav2vgm.batch import convert_file
    from wav2vgm.convert import ConvertOptions
    from wav2vgm.opl3 import registers as R
    from wav2vgm.vgm import read_vgm
    t = np.arange(44100) / 44100
    src, out = tmp_path / "sweep.wav", tmp_path / "sweep.vgm"
    write_wav(str(src), (0.5 * np.sin(2 * np.pi * np.cumsum(3000 * (100 / 3000) ** t) / 44100)
                         ).astype(np.float32), 44100)
    convert_file(str(src), str(out), ConvertOptions(method="sines"))
    v = read_vgm(str(out))
    keyed, key_ons = {}, 0
    for reg, val in zip(np.asarray(v.regs).tolist(), np.asarray(v.values).tolist()):
        if R.CH_KEY_BLOCK_FNUM_HI <= reg & 0xFF <= R.CH_KEY_BLOCK_FNUM_HI + 8:
            key_ons += bool(val & 0x20) and not keyed.get(reg, False)
            keyed[reg] = bool(val & 0x20)
    assert key_ons <= 3, key_ons


def test_band_leaders_come_before_a_bands_second_partial():
    """Each mel band's loudest peak goes first, then the others, each group in the given
    (loudest-first) order; frames' missing peaks stay last."""
    from wav2vgm.methods.pursuit import atom_rows, atom_top_band
    from wav2vgm.methods.sines import band_leaders_first
    pf = np.array([[5150.0, 5350.0, 2000.0, 440.0, 0.0], [100.0, 0.0, 0.0, 0.0, 0.0]])
    band = atom_top_band(atom_rows(np.zeros(4, np.int64), pf[0, :4]))
    assert band[0] == band[1] and len(set(band[[0, 2, 3]].tolist())) == 3
    assert band_leaders_first(pf).tolist() == [[0, 2, 3, 1, 4], [0, 1, 2, 3, 4]]


def test_channels_go_to_an_empty_band_before_a_bands_second_partial():
    """Two channels, two loud partials in one mel band and a quiet one 20 dB down in another:
    the quiet one gets the second channel (its band would stay empty) and the first
    channel plays its band's power (match_band_power)."""
    from wav2vgm.opl3 import registers as R
    freqs = np.fft.rfftfreq(4096, 1 / 44100)
    mag = _tones(freqs, [(5150.0, 0.5), (5350.0, 0.4), (1500.0, 0.05)], 6)
    out = SinesMethod(n_voices=2).process(mag, freqs)
    played = sorted(float(f) for f in (R.fnum_to_hz(out.fnum[3].astype(np.int64),
                                                    out.block[3].astype(np.int64))
                                       * np.asarray(R.MULT_FACTORS)[out.mult2[3]]))
    assert played == pytest.approx([1500.0, 5150.0], rel=0.01)
    assert (out.amp2[3] > 0).all()


def test_empty_bands_first_offers_partners_in_unplayed_bands_first():
    from wav2vgm.methods.sines import empty_bands_first, sine_bands
    spare = np.array([[5050.0, 3000.0, 0.0], [300.0, 5050.0, 0.0]])
    played = np.array([[1000.0, 4900.0], [0.0, 0.0]])
    assert sine_bands(np.array([4900.0]))[0] == sine_bands(np.array([5050.0]))[0]
    assert empty_bands_first(spare, played).tolist() == [[1, 0, 2], [0, 1, 2]]


def test_a_channels_partner_goes_to_an_empty_band_before_a_played_one():
    """Operator 1 of the 1000 Hz channel can pair with 5050 Hz (x5, louder, in the band the
    4900 Hz channel plays) or 3000 Hz (x3, in a band no channel plays): it takes 3000 Hz."""
    freqs = np.fft.rfftfreq(4096, 1 / 44100)
    mag = _tones(freqs, [(1000.0, 0.5), (4900.0, 0.4), (5050.0, 0.3), (3000.0, 0.1)], 6)
    out = SinesMethod(n_voices=2).process(mag, freqs)
    from wav2vgm.opl3 import registers as R
    hz = R.fnum_to_hz(out.fnum[3].astype(np.int64), out.block[3].astype(np.int64))
    c = int(np.argmin(np.abs(hz * np.asarray(R.MULT_FACTORS)[out.mult2[3]] - 1000.0)))
    assert R.MULT_FACTORS[out.mult1[3, c]] == 3 and out.amp1[3, c] > 0


def test_pick_peaks_adds_the_leaders_of_the_bands_the_loudest_leave_empty():
    """Four loud partials share a mel band with the fifth; quiet partials sit alone in
    bands of their own: each quiet one comes after the four loudest, one per band, while
    the cluster's fifth (its band taken) stays out."""
    from wav2vgm.methods.sines import pick_peaks, sine_bands
    freqs = np.fft.rfftfreq(4096, 1 / 44100)
    cluster = [(15000.0 + 150 * i, 0.5 - 0.02 * i) for i in range(5)]
    quiet = [(300.0, 0.004), (1000.0, 0.002), (2500.0, 0.001)]
    assert len(set(sine_bands(np.array([f for f, _ in cluster])).tolist())) == 1
    hz, amp = pick_peaks(_tones(freqs, cluster + quiet, 2), freqs, n_peaks=4)
    assert hz.shape == (2, 7) and (amp > 0).all()
    assert hz[0, :4] == pytest.approx([f for f, _ in cluster[:4]], abs=6.0)       # bin centres
    assert sorted(hz[0, 4:]) == pytest.approx([300.0, 1000.0, 2500.0], abs=6.0)
    assert (np.diff(amp[0]) < 0).all()                             # loudest first throughout


def test_a_quiet_partial_alone_in_its_band_gets_a_channel_past_many_louder_ones():
    """Three channels; twenty loud partials in two mel bands (14.3-15.9 kHz) and one 40 dB
    down at 500 Hz: the quiet partial is picked though many louder peaks come first,
    and it takes a channel, its band being empty otherwise."""
    from wav2vgm.opl3 import registers as R
    freqs = np.fft.rfftfreq(4096, 1 / 44100)
    loud = [(14300.0 + 80 * i, 0.5 - 0.005 * i) for i in range(20)]
    mag = _tones(freqs, loud + [(500.0, 0.004)], 4)
    out = SinesMethod(n_voices=3).process(mag, freqs)
    hz = (R.fnum_to_hz(out.fnum[2].astype(np.int64), out.block[2].astype(np.int64))
          * np.asarray(R.MULT_FACTORS)[out.mult2[2]])
    assert np.abs(hz[out.amp2[2] > 0] - 500.0).min() < 5.0, hz
