"""Tests of wav2vgm.spectrum: framing, spectra, mel, and the log-mel distance."""

from __future__ import annotations

import time

import numpy as np
import pytest

from wav2vgm import spectrum as S
from wav2vgm.errors import ParameterError

RATE_HZ = 44100
HOP_S = S.HOP / RATE_HZ


def music(seconds: float, *, seed: int = 0, rate_hz: int = RATE_HZ) -> np.ndarray:
    """Music-like test signal: a few sines under a slow envelope plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    x = np.zeros_like(t)
    for f_hz, amp in ((220, 0.2), (330, 0.1), (440, 0.15), (660, 0.05), (1250, 0.05),
                      (3100, 0.02)):
        x += amp * np.sin(2 * np.pi * f_hz * t + rng.uniform(0, 2 * np.pi))
    env = 0.2 + 0.8 * np.sin(2 * np.pi * 0.7 * t) ** 2
    return (x * env + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def sine(f_hz: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    return (amp * np.sin(2 * np.pi * f_hz * t)).astype(np.float32)


# ---------------------------------------------------------------------------
# framing and spectra

@pytest.mark.parametrize("n, hop, expected", [(0, 512, 0), (1, 512, 1), (512, 512, 1),
                                              (513, 512, 2), (44100, 512, 87), (10, 3, 4)])
def test_frame_count(n, hop, expected):
    frames = S.frame_signal(np.ones(n), hop=hop, n_fft=16)
    assert frames.shape == (expected, 16)


def test_frames_are_centred():
    x = np.arange(1, 101, dtype=float)                 # sample i has value i+1
    frames = S.frame_signal(x, hop=10, n_fft=8)
    assert frames.shape == (10, 8)
    for i in range(10):
        assert frames[i, 4] == x[i * 10]               # centre of frame i is sample i*hop
    assert np.all(frames[0, :4] == 0)                  # zero padding on the left
    assert np.array_equal(frames[1], x[6:14])
    last = S.frame_signal(x, hop=10, n_fft=64)[-1]     # zero padding on the right
    assert last[32] == x[90] and np.all(last[32 + 10:] == 0)


def test_frames_not_centred():
    x = np.arange(1, 21, dtype=float)
    frames = S.frame_signal(x, hop=5, n_fft=8, centre=False)
    assert frames.shape == (4, 8)
    assert np.array_equal(frames[1], x[5:13])
    assert np.array_equal(frames[3], np.r_[x[15:20], 0, 0, 0])


@pytest.mark.parametrize("window", ["hann", "hamming", "blackmanharris"])
def test_full_scale_bin_sine_is_0_db(window):
    n_fft, k = 2048, 100
    t = np.arange(n_fft)
    frames = np.sin(2 * np.pi * k * t / n_fft + 0.3)[None, :]
    p = S.power_spectrum(frames, window=window)
    assert p.shape == (1, n_fft // 2 + 1)
    assert int(np.argmax(p[0])) == k
    assert S.db(p)[0, k] == pytest.approx(0.0, abs=1e-6)


def test_power_spectrum_float32_and_window_array():
    n = 1024
    frames = np.sin(2 * np.pi * 32 * np.arange(n) / n).astype(np.float32)[None, :]
    w = np.hanning(n + 2)[1:-1]
    p = S.power_spectrum(frames, window=w, n_fft=2 * n)  # zero padded: bin 64
    assert p.dtype == np.float32 and p.shape == (1, n + 1)
    assert int(np.argmax(p[0])) == 64
    assert p[0, 64] == pytest.approx(1.0, abs=1e-3)
    mag = S.magnitude_spectra(frames, window=w, n_fft=2 * n)
    assert mag.dtype == np.float32
    np.testing.assert_allclose(mag, np.sqrt(p), rtol=1e-6)


def test_db_floor():
    d = S.db(np.array([0.0, 1e-20, 1.0, 100.0]))
    np.testing.assert_allclose(d, [-120.0, -120.0, 0.0, 20.0])
    assert S.db(np.array([0.0]), floor_db=-60.0)[0] == pytest.approx(-60.0)


def test_spectra_db():
    x = sine(RATE_HZ * 50 / 2048, 0.5, amp=1.0)        # bin 50 of a 2048-point FFT
    d = S.spectra_db(x, hop=512)
    assert d.dtype == np.float32
    assert d.shape == (-(-x.size // 512), 1025)
    assert d[10, 50] == pytest.approx(0.0, abs=0.01)
    assert d[10].argmax() == 50


def test_log_frequency_matrix_has_no_empty_columns():
    m = S.log_frequency_matrix(rate_hz=44100, n_fft=2048, n_bins=120, f_min_hz=20.0,
                               f_max_hz=20000.0)
    assert m.shape == (1025, 120)
    assert not m.flags.writeable
    assert np.all(m.sum(axis=0) > 0)
    assert np.all(m >= 0)
    centres = S.log_bin_frequencies_hz(n_bins=120, f_min_hz=20.0, f_max_hz=20000.0)
    assert centres[0] == pytest.approx(20.0) and centres[-1] == pytest.approx(20000.0)
    # a sine lands in the log bin nearest its frequency
    f_hz = 1000.0
    p = S.power_spectrum(S.frame_signal(sine(f_hz, 0.2), hop=512, n_fft=2048))
    k = int(np.argmax((p @ m)[5]))
    assert k == int(np.argmin(np.abs(np.log(centres / f_hz))))


def test_mel_filterbank():
    fb = S.mel_filterbank()
    assert fb.shape == (80, 1025) and fb.dtype == np.float32
    assert not fb.flags.writeable
    assert S.mel_filterbank() is fb                     # cached
    assert np.all(fb.sum(axis=1) > 0)
    assert fb.max() <= 1.0 + 1e-6
    # centres increase
    assert np.all(np.diff(np.argmax(fb, axis=1)) >= 0)
    # too many bands for the FFT resolution: still no empty band
    dense = S.mel_filterbank(n_mels=256, f_min_hz=20.0, n_fft=512)
    assert np.all(dense.sum(axis=1) > 0)
    np.testing.assert_allclose(S.mel_to_hz(S.hz_to_mel([30.0, 999.0, 1000.0, 16000.0])),
                               [30.0, 999.0, 1000.0, 16000.0])


def test_logmel_db_shape_and_resampling():
    x = music(1.0)
    m = S.logmel_db(x)
    assert m.shape == (-(-x.size // 512), 80) and m.dtype == np.float32
    assert m.min() >= -120.0
    def chord(rate_hz):
        t = np.arange(rate_hz) / rate_hz
        return sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 700.0, 2500.0))
    c44, c48 = S.logmel_db(chord(44100)), S.logmel_db(chord(48000), rate_hz=48000)
    assert c48.shape == c44.shape
    loud = c44 > c44.max() - 40
    assert np.abs(c48 - c44)[5:-5][loud[5:-5]].max() < 0.5
    assert S.logmel_db(np.zeros(0)).shape == (0, 80)
    assert np.all(S.logmel_db(np.zeros(4096)) == -120.0)


# ---------------------------------------------------------------------------
# the metric

@pytest.fixture(scope="module")
def ref() -> np.ndarray:
    return music(4.0)


def test_identical_signals(ref):
    s = S.logmel_distance(ref, ref)
    assert s.distance_db == 0.0
    assert s.lag_s == 0.0
    assert s.gain_db == pytest.approx(0.0, abs=1e-3)
    assert s.n_frames > 0
    assert isinstance(s, S.Score)


def test_delayed_by_three_hops(ref):
    late = np.concatenate([np.zeros(3 * S.HOP, np.float32), ref])[:ref.size]
    s = S.logmel_distance(ref, late)
    assert s.lag_s == pytest.approx(3 * 512 / 44100)
    assert s.distance_db < 0.5
    early = ref[3 * S.HOP:]
    s = S.logmel_distance(ref, early)
    assert s.lag_s == pytest.approx(-3 * 512 / 44100)
    assert s.distance_db < 0.5


def test_lag_limit(ref):
    late = np.concatenate([np.zeros(20 * S.HOP, np.float32), ref])
    assert abs(S.logmel_distance(ref, late, max_lag_s=0.1).lag_s) <= 0.1 + 1e-9
    assert S.logmel_distance(ref, late, max_lag_s=0.3).lag_s == pytest.approx(20 * HOP_S)
    assert S.logmel_distance(ref, late, max_lag_s=0.0).lag_s == 0.0


def test_gain_invariance(ref):
    s = S.logmel_distance(ref, 0.5 * ref)
    assert s.distance_db < 0.1
    assert s.gain_db == pytest.approx(6.02, abs=0.01)
    s = S.logmel_distance(ref, 4.0 * ref)
    assert s.distance_db < 0.1
    assert s.gain_db == pytest.approx(-12.04, abs=0.01)


def test_silent_test_scores_badly(ref):
    s = S.logmel_distance(ref, np.zeros_like(ref))
    assert np.isfinite(s.distance_db)
    assert s.distance_db > 15.0
    assert s.gain_db == 0.0
    assert S.logmel_distance(ref, np.zeros(0)).distance_db == pytest.approx(s.distance_db)


def test_different_pitch_is_worse():
    a = sine(440.0, 2.0)
    same = S.logmel_distance(a, a).distance_db
    off = S.logmel_distance(a, sine(460.0, 2.0)).distance_db
    assert same == 0.0
    assert off > 3.0


def test_noise_is_worse_than_the_music_itself(ref):
    other = music(4.0, seed=1)                          # same notes, other phases and noise
    noise = np.random.default_rng(5).standard_normal(ref.size).astype(np.float32) * 0.1
    d_other = S.logmel_distance(ref, other).distance_db
    d_noise = S.logmel_distance(ref, noise).distance_db
    assert d_other < 3.0 < d_noise


def test_different_lengths_and_rates(ref):
    short = S.logmel_distance(ref, ref[: ref.size // 2])
    assert short.distance_db > 1.0                       # the missing half counts as silence
    longer = S.logmel_distance(ref, np.concatenate([ref, music(2.0, seed=3)]))
    assert longer.distance_db < 0.05                    # only the last frame differs
    r48 = music(2.0, rate_hz=48000)
    s = S.logmel_distance(r48, r48, rate_hz=48000)
    assert s.distance_db == 0.0 and s.lag_s == 0.0


def test_distance_is_fast():
    a, b = music(60.0), music(60.0, seed=1)
    S.logmel_distance(a[:RATE_HZ], b[:RATE_HZ])          # warm the caches
    t0 = time.perf_counter()
    S.logmel_distance(a, b)
    assert time.perf_counter() - t0 < 3.0               # typically ~0.3 s; slack for busy CI


# ---------------------------------------------------------------------------
# errors

def test_errors(ref):
    with pytest.raises(ParameterError, match="silent"):
        S.logmel_distance(np.zeros(44100), ref)
    with pytest.raises(ParameterError, match="shorter than one frame"):
        S.logmel_distance(ref[:1000], ref[:1000])
    bad = ref.copy()
    bad[100] = np.nan
    with pytest.raises(ParameterError, match="NaN"):
        S.logmel_distance(bad, ref)
    with pytest.raises(ParameterError, match="NaN"):
        S.logmel_distance(ref, bad)
    with pytest.raises(ParameterError, match="mono"):
        S.logmel_distance(np.stack([ref, ref], axis=1), ref)
    with pytest.raises(ParameterError, match="-1"):
        S.logmel_distance(ref, ref, max_lag_s=-1)
    with pytest.raises(ParameterError, match="0"):
        S.logmel_distance(ref, ref, floor_db=0)
    with pytest.raises(ParameterError, match="-5"):
        S.logmel_db(ref, rate_hz=-5)
    with pytest.raises(ParameterError, match="0"):
        S.frame_signal(ref, hop=0, n_fft=2048)
    with pytest.raises(ParameterError, match="30000"):
        S.mel_filterbank(f_max_hz=30000.0)
    with pytest.raises(ParameterError, match="n_bins"):
        S.log_frequency_matrix(rate_hz=44100, n_fft=2048, n_bins=1, f_min_hz=20.0,
                               f_max_hz=20000.0)
    with pytest.raises(ParameterError, match="nosuchwindow"):
        S.power_spectrum(np.zeros((2, 64)), window="nosuchwindow")
    with pytest.raises(ParameterError):
        S.power_spectrum(np.zeros(64))


def test_plot_without_matplotlib(ref, tmp_path):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(ParameterError, match="matplotlib"):
            S.spectrogram_figure(ref, ref, rate_hz=RATE_HZ, path=tmp_path / "x.png")
    else:
        S.spectrogram_figure(ref, ref, rate_hz=RATE_HZ, path=tmp_path / "x.png")
        assert (tmp_path / "x.png").stat().st_size > 0


def test_aligned_distance_is_the_yardstick_without_the_lag_search():
    rng = np.random.default_rng(4)
    t = np.arange(44100) / 44100
    ref = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)
    test = 0.25 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 1500 * t)
    full = S.logmel_distance(ref, test, rate_hz=44100)
    assert full.lag_s == 0.0 and full.distance_db > 1.0
    aligned = S.aligned_distance(S.logmel_db(ref), S.logmel_db(test))
    assert aligned == pytest.approx(full.distance_db, abs=1e-6)
    with pytest.raises(ParameterError, match="silent"):
        S.aligned_distance(np.full((3, 80), -150.0), np.zeros((3, 80)))
    with pytest.raises(ParameterError, match="shape"):
        S.aligned_distance(np.zeros((3, 80)), np.zeros((2, 80)))


def test_analysis_spectra_drop_a_constant_offset_exactly():
    from wav2vgm.methods import features
    n = features.WINDOW
    t = np.arange(n) / 44100.0
    x = np.stack([0.3 * np.sin(2 * np.pi * f * t + 0.7) for f in (60.0, 440.0, 5000.0)])
    x = x.astype(np.float32)
    clean = features.analysis_spectra(x)
    shifted = features.analysis_spectra(x + np.float32(0.5))
    np.testing.assert_allclose(shifted, clean, atol=2e-5)
    # the plain spectrum shows the offset: its DC bin and side lobes far above the tone's floor
    plain = S.magnitude_spectra(x + np.float32(0.5), window=features.analysis_window(),
                                n_fft=features.N_FFT)
    assert plain[1, 0] > 0.9 and plain[1, 5] > 100 * clean[1, 5]


def test_the_gain_search_reaches_a_test_far_louder_or_quieter_than_the_reference():
    ref = music(2.0, seed=3)
    for gain_db in (-45.0, 60.0):        # (much quieter, its quietest cells reach -120 dB)
        s = S.logmel_distance(ref, ref * np.float32(10 ** (gain_db / 20)))
        assert s.distance_db < 0.05 and s.gain_db == pytest.approx(-gain_db, abs=0.05), (gain_db, s)
    # and a nearby level as before
    s = S.logmel_distance(ref, ref * np.float32(10 ** (15 / 20)))
    assert s.distance_db < 0.01 and s.gain_db == pytest.approx(-15, abs=0.05)
