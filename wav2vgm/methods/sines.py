"""The baseline: spectral peaks played as pure sines (the seed's idea, done right).

* peaks are picked per frame with sub-bin (parabolic, log-magnitude)
  interpolation of frequency and amplitude: the loudest few and the loudest
  of every other mel band (:func:`pick_peaks`' band leaders);
* the channels play the loudest peak of each mel band first, then the
  loudest of the rest (:func:`band_leaders_first`), tracked across frames so
  each channel follows one partial and keeps its key on while its pitch and
  level change;
* a partial above 6.2 kHz is reached through the multiplier;
* the second operator of each additive channel plays a further partial when
  its frequency is a multiplier ratio away from the channel's partial, one
  in a band no channel plays first (:func:`empty_bands_first`), so up to 36
  partials sound on 18 channels;
* each partial then moves towards the power of its mel band (at most 6 dB):
  a peak shows one partial, the band also holds what no channel plays.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..opl3 import registers as R
from .. import spectrum
from ..spectrum import parabolic_peak
from .base import GLIDE_MAX_CENTS, VoiceFrames, glide_neighbours, greedy_match_frames

_MULT_VALUES = np.array(R.MULT_FACTORS)                 # by MULT register value
_MULT_REGS = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15])  # distinct factors
_SORTED_FACTORS = _MULT_VALUES[_MULT_REGS]            # increasing: 0.5, 1, 2, ..., 15
_SORTED_REGS = _MULT_REGS
# relative frequency error accepted for a paired partial: the chip plays exact
# multiples, measured harmonics are not (peak interpolation, pitch moving within
# the window, stiff strings); 2% pairs most harmonics of real instruments, and
# the channel's pitch then splits the error between its two partials
# (rechecked 2026-12-05 with the band order, adplay, 23 clips: 1.5% / 2% / 3% 2.039 /
# 2.032 / 2.076 dB, the 15 tuned on 2.048 / 2.034 / 2.085)
_RATIO_TOL = 0.02
_TRACK_TOL_CENTS = 70.0     # a partial continues a track if it moved less than this
# (adplay, 23 clips, `model`, 2026-12-05: 50 / 80 / 120 cents 2.080 / 2.064 / 2.080 dB;
# after the band leaders 30 / 40 / 50 / 60 / 65 / 70 / 75 / 80 / 100: 2.046 / 2.022 /
# 2.012 / 1.995 / 1.997 / 1.993 / 1.998 / 2.004 / 2.005, the 15 tuned on 2.058 / 2.030 /
# 2.019 / 1.999 / 2.001 / 1.997 / 2.005 / 2.004 / 2.019; at 70 opl_patches 2.07 -> 2.03,
# opl_random_23 1.81 -> 1.74 but _12 1.88 -> 1.95; `sines` 2.719 -> 2.707)
# ... and a frame's loudest partial, falling from under LEAD_MAX_HZ, continues the last
# frame's loudest (when neither found another) if it fell less than LEAD_CENTS: a kick
# drum's sine drops 100-300 cents a frame, and each frame re-keyed it on another channel,
# its last one releasing beside it.  adplay: the kick of `python benchmarks/run.py tones`
# 4.94 -> 3.36 dB (`sines` 4.63 -> 4.17); an ad-hoc drum loop 5.51 -> 4.45; the 23 clips
# 2.064 -> 2.066 (the 15 tuned on 2.077 -> 2.078, held out 2.041 -> 2.044: speech_es 2.91
# -> 2.94), `sines` 3.151 -> 3.149.  Rising too, speech_b and speech_gb fell under 30%
# below `sines` (`sines` gained there); without the pitch limit speech lost more still.
# At any pitch and either way the loudest continues where it glides (:func:`_glides`):
# the last frame's pitch is gone from this frame's peaks and the loudest partial moved
# the same way in the frame before or after, by at least 50 cents and by at most 2.5x
# this step (:func:`~.base.glide_neighbours`; a note that changes in one step moves
# once; a vowel's loudest harmonic hops by the harmonics' spacing).  `python benchmarks/run.py
# glides --player adplay`, `model` / `sines`: 8 notes joined by 40 ms glides 5.22 ->
# 4.56 / 4.42 -> 3.26 dB, sweeps 3 kHz -> 100 Hz 9.85 -> 8.94 / 10.90 -> 7.92, a +-200
# Hz vibrato 8.86 -> 6.19 / 9.06 -> 6.40; the 23 clips 2.0654 -> 2.0644 (the 15 tuned on
# 2.0758 -> 2.0743: doofus 2.754 -> 2.728, smkerem 1.721 -> 1.733; held out the same),
# `sines` 3.149 either way.  Without the ratio limit 2.0653 (held out 2.0459 -> 2.0498:
# speech_es 2.938 -> 2.963), with 1.6x / 2x 2.0646; without the motion test 2.0696
# (speech_a 2.857 -> 2.937)
LEAD_CENTS = GLIDE_MAX_CENTS
LEAD_MAX_HZ = 200.0
# the factor nearest a frequency ratio, looked up on a grid of 64 steps per octave
# (0.55% apart): wherever a factor lies within _RATIO_TOL of the ratio it is the one
# found (neighbouring factors are at least 11% apart), elsewhere nothing fits anyway
_LUT_STEPS = 64
_LUT_LO, _LUT_HI = -80, 4 * 64                          # ratios 2^-1.25 .. 2^4
_FACTOR_LUT = np.argmin(np.abs(_SORTED_FACTORS[None, :] - 2.0 ** (
    np.arange(_LUT_LO, _LUT_HI + 1) / _LUT_STEPS)[:, None]), axis=1)


_LOG2_FACTORS = np.log2(_SORTED_FACTORS)
# a factor F fits a ratio q when |F/q - 1| < _RATIO_TOL, i.e. log2(F) - log2(q) lies in here
_LOG2_FIT = (np.log2(1 - _RATIO_TOL), np.log2(1 + _RATIO_TOL))


_LOG2_FACTOR_LUT = _LOG2_FACTORS[_FACTOR_LUT]           # log2 of the factor per grid step
_FIT_ROWS = 256                                         # frames per block of _factor_table


def _factor_fit(log2_ratio: np.ndarray, *, index: bool = True):
    """For ratios given as log2 (callers subtract the logs of two frequencies, never
    dividing their large broadcast tables): the index into the sorted multiplier values
    of the nearest one (None with ``index=False``), and whether it is within 2% of the
    ratio."""
    # the nearest grid step, counted from _LUT_LO (ratios off the grid take its ends)
    g = log2_ratio * _LUT_STEPS
    g += 0.5 - _LUT_LO
    step = g.astype(np.int32)
    np.clip(step, 0, _FACTOR_LUT.size - 1, out=step)
    off = _LOG2_FACTOR_LUT.take(step)
    off -= log2_ratio
    fit = off > _LOG2_FIT[0]
    fit &= off < _LOG2_FIT[1]
    return (_FACTOR_LUT.take(step) if index else None), fit


def _factor_table(log2_hz: np.ndarray, log2_base_hz: np.ndarray) -> np.ndarray:
    """Whether each frequency is within 2% of a multiplier value times each base, frame
    by frame (:func:`_factor_fit`): ``log2_hz`` (n_frames, a) and ``log2_base_hz``
    (n_frames, b) -> (n_frames, b, a) bool.  Worked out a few hundred frames at a time,
    so the temporary tables stay in the cache."""
    n, b, a = log2_hz.shape[0], log2_base_hz.shape[1], log2_hz.shape[1]
    fit = np.empty((n, b, a), bool)
    for lo in range(0, n, _FIT_ROWS):
        s = slice(lo, lo + _FIT_ROWS)
        fit[s] = _factor_fit(log2_hz[s, None, :] - log2_base_hz[s, :, None], index=False)[1]
    return fit


def _log2_hz(f_hz) -> np.ndarray:
    return np.log2(np.maximum(f_hz, 1e-9))


def pick_peaks(mag: np.ndarray, freqs_hz: np.ndarray, *, n_peaks: int, floor_db: float = -90.0,
               range_db: float = 60.0, window_bins: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's ``n_peaks`` loudest spectral peaks and its band leaders (Hann-windowed spectra).

    ``mag``: (n_frames, n_bins) linear amplitudes.  Returns (freq_hz, amp),
    each (n_frames, n_out), loudest first, amp 0 where a frame has fewer
    peaks: the ``n_peaks`` loudest, then the band leaders, the loudest peak
    of every mel band none of those lies in (the band a sine there is
    loudest in, :func:`sine_bands`); ``n_out`` >= ``n_peaks`` is what the
    block's frame with the most peaks needs (see :data:`PEAKS_PER_CHANNEL`).

    Peaks are local maxima above ``floor_db`` (re full scale), within
    ``range_db`` of the frame's loudest peak, and above the Hann side-lobe
    envelope of every louder peak (side lobes and the ripple of a note that
    starts inside the window are not partials).  ``window_bins``: FFT bins
    per window bin (the zero-padding factor).

    The converter analyses every input with its peak sample at full scale
    (:data:`~wav2vgm.convert.ANALYSIS_PEAK`), so the floor lies that far
    under the input's peak.  At -70 dB it cut quiet partials the yardstick
    still hears (adplay, 23 clips: `model` 2.136 -> 2.120 dB at -90, 2.125
    at -80, 2.119 at -100; `sines` 3.189 -> 3.174).  Hiss 60 dB under full
    scale reads about -85 dB per bin, its loudest peaks about -76, so in
    quiet passages a noisy recording's hiss is played as faint sines, far
    under what the yardstick hears (60 dB under the loudest mel band).
    ``range_db``: 50 / 60 / 70 dB scored 2.095 / 2.064 / 2.070 dB (`model`,
    adplay, 23 clips, 2026-12-05; at 50 doofus 2.73 -> 2.90, flute 1.81 ->
    1.92).
    """
    n_frames, n_bins = mag.shape
    if n_frames == 0:
        return np.zeros((0, n_peaks)), np.zeros((0, n_peaks))
    # peaks are found on the linear magnitudes (the same comparisons as in dB, which
    # is monotonic); logs are taken only around the candidates
    mag = np.asarray(mag, np.float32)
    centre = mag[:, 1:-1]
    is_peak = (centre > mag[:, :-2]) & (centre >= mag[:, 2:])
    top = centre.max(axis=1, keepdims=True)
    # above the floor and within range_db of the frame's loudest: above the higher of the two
    is_peak &= centre > np.maximum(np.float32(10 ** (floor_db / 20)),
                                   top * np.float32(10 ** (-range_db / 20)))
    # two neighbouring bins are never both peaks, so the candidates are picked among the
    # louder bins of each pair (half the columns; 60 s clip: 49 -> 30 ms).  The pairs at
    # or above each frame's n_cand-th loudest are found by value (a partition, then one
    # comparison), so they come out in frequency order, the order the side-lobe test
    # works in (no sort by frequency: pick_peaks on the 60 s clip 91 -> 79 ms).  The
    # loudest come first in the partition: numpy's selection is slow with the many ties
    # (the zeros of bins that are no peak) at the far end (190 against 30 ms).  It works
    # on the bits (non-negative float32s order as their uint32 patterns; the complement
    # turns the order round): 60 s clip 16 -> 12 ms against negated floats
    n_pairs = -(-centre.shape[1] // 2)
    score = np.zeros((n_frames, 2 * n_pairs), np.float32)
    np.multiply(centre, is_peak, out=score[:, :centre.shape[1]])    # 0 where no peak
    pair = np.maximum(score[:, 0::2], score[:, 1::2])
    n_cand = min(n_peaks + 16, n_pairs)
    kth = ~np.partition(~pair.view(np.uint32), n_cand - 1, axis=1)[:, n_cand - 1:n_cand]
    # (at least the smallest float32 above 0: peaks only)
    kth = np.maximum(kth.view(np.float32), np.float32(np.finfo(np.float32).smallest_subnormal))
    cand = pair >= kth
    # and each band's loudest pair (a run of pairs whose sines are loudest in one band):
    # the leaders are told after the side-lobe test, by their interpolated peaks.  The
    # side-lobe test sees them too, which in spiky noise now and then masks one of the
    # loudest (2% of the frames of a random-spectra check)
    starts, lengths = _pair_bands(n_pairs, float(freqs_hz[1] - freqs_hz[0]))
    cand |= pair >= np.repeat(np.maximum.reduceat(pair, starts, axis=1), lengths, axis=1)
    cand &= pair > 0
    r, col = np.nonzero(cand)                                  # sorted by frame
    first = np.searchsorted(r, np.arange(n_frames))
    rank = np.arange(r.size) - first[r]
    width = int(rank.max()) + 1 if rank.size else 1            # the most candidates a frame has
    idx = np.zeros((n_frames, width), np.int64)                # frames with fewer: pair 0 ...
    real = np.zeros((n_frames, width), bool)                   # ... marked as no peak
    idx[r, rank] = col
    real[r, rank] = True
    rows = np.arange(n_frames)[:, None]
    flat = score.ravel()
    at = rows * score.shape[1] + 2 * idx                       # the pair's first bin, flat
    at += np.take(flat, at + 1) > np.take(flat, at)            # the pair's peak
    idx = at - rows * score.shape[1] + 1                       # bin index in the full spectrum
    sc = np.where(real, np.take(flat, at), np.float32(-1.0))   # -1: no peak
    at = (rows * n_bins + idx)[..., None] + np.arange(-1, 2)          # into the flat spectra
    near = np.take(mag.ravel(), at)                                   # (n, width, 3)
    np.maximum(near, np.float32(1e-9), out=near)
    near_db = 20 * np.log10(near)
    delta, height = parabolic_peak(near_db[..., 0], near_db[..., 1], near_db[..., 2])
    peak_db = np.where(real, height, -np.inf)
    pos = idx + delta
    keep = real & ~_side_lobes(pos, peak_db, window_bins=window_bins, range_db=range_db)
    # loudest (by the peak bin's magnitude) first
    order = np.argsort(np.where(keep, -sc, np.inf), axis=1)
    kept = np.take_along_axis(keep, order, axis=1)
    # the n_peaks loudest, then the leaders of the bands they leave empty: a peak leads its
    # band where no louder one is in it (its band read from a table)
    at = np.take_along_axis(pos, order, axis=1)
    at *= _BAND_STEPS
    at += 0.5
    band = _position_bands(n_bins, float(freqs_hz[1] - freqs_hz[0])).take(
        np.clip(at.astype(np.int32), 0, _BAND_STEPS * n_bins - 1))
    band[~kept] = spectrum.N_MELS
    kept[:, n_peaks:] &= ~_band_followers(band)[:, n_peaks:]
    cr, cc = np.nonzero(kept)
    col = np.arange(cr.size) - np.searchsorted(cr, np.arange(n_frames))[cr]       # packed
    n_out = max(n_peaks, int(col.max()) + 1 if col.size else 0)
    out_f, out_a = np.zeros((n_frames, n_out)), np.zeros((n_frames, n_out))
    src = order[cr, cc]
    bin_hz = freqs_hz[1] - freqs_hz[0]
    out_f[cr, col] = freqs_hz[idx[cr, src]] + delta[cr, src] * bin_hz
    out_a[cr, col] = 10 ** (peak_db[cr, src] / 20)
    return out_f, out_a


@lru_cache(maxsize=4)
def _pair_bands(n_pairs: int, bin_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pick_peaks`' bin pairs grouped by the mel band a sine there is loudest in:
    (the first pair of each run of pairs in one band, each run's length in pairs).  Pair
    ``j`` holds FFT bins ``2j + 1`` and ``2j + 2``."""
    band = sine_bands((2 * np.arange(n_pairs) + 1.5) * bin_hz)
    starts = np.flatnonzero(np.r_[True, band[1:] != band[:-1]])
    lengths = np.diff(np.r_[starts, n_pairs])
    for a in (starts, lengths):
        a.flags.writeable = False
    return starts, lengths


_BAND_STEPS = 8          # :func:`_position_bands`' steps per FFT bin


@lru_cache(maxsize=4)
def _position_bands(n_bins: int, bin_hz: float) -> np.ndarray:
    """:func:`sine_bands` of positions in FFT bins, ``1 / _BAND_STEPS`` bin apart (a table
    to take from: the bands of a block's peaks in a fifth of the time)."""
    band = sine_bands(np.arange(n_bins * _BAND_STEPS) * (bin_hz / _BAND_STEPS)).astype(np.int16)
    band.flags.writeable = False
    return band


def _side_lobes(pos: np.ndarray, peak_db: np.ndarray, *, window_bins: float,
                range_db: float) -> np.ndarray:
    """Which peaks lie under a louder peak's main lobe or Hann side-lobe envelope.

    ``pos``: (n_frames, n_cand) positions in FFT bins (``window_bins`` FFT
    bins per window bin), ascending along each row with the no-peaks last
    (as :func:`pick_peaks` finds them); ``peak_db``: their levels (-inf: no peak), all
    within about ``range_db`` of each other.  Hann side lobes are -31.5 dB
    at 2.5 window bins and fall 18 dB per octave; a peak within 3 dB of that
    envelope (or within 1.5 window bins of a louder peak) is masked.

    Only neighbours in frequency can mask each other: a peak ``range_db``
    (+3 dB of interpolation) below a louder one is clear of its envelope
    beyond ``reach`` window bins, and peaks (local maxima) are at least two
    FFT bins apart, so each peak is compared with the few on either side in
    frequency order instead of with every other candidate.
    """
    n, c = pos.shape
    hit = np.zeros((n, c), bool)
    if c < 2:
        return hit
    reach = 2.5 * 2.0 ** ((range_db + 3.0 + 3.0 - 31.5) / 18.0) * window_bins   # FFT bins
    k_max = min(c - 1, int(np.ceil((reach + 1.0) / 2.0)) + 1)
    # float32, positions in window bins, the envelope's offset folded into one constant
    p = np.where(np.isfinite(peak_db), pos, np.inf).astype(np.float32) / np.float32(window_bins)
    db = peak_db.astype(np.float32)
    offset = np.float32(28.5 - 18 * np.log2(2.5))
    # the quieter of two peaks is masked if it lies within 1.5 window bins of the louder,
    # or more than 28.5 dB + the envelope's fall at their distance below it
    with np.errstate(invalid="ignore"):                                  # -inf - -inf: no peaks
        for o in range(1, k_max + 1):
            lo, hi = slice(0, c - o), slice(o, c)
            d = np.abs(p[:, hi] - p[:, lo])
            louder = db[:, hi] - db[:, lo]                                # hi louder than lo by
            fall = np.log2(np.maximum(d, np.float32(2.5)))
            fall *= np.float32(18)
            fall += offset
            m = np.abs(louder) > fall
            m |= d < 1.5
            hit[:, lo] |= m & (louder > 0)
            hit[:, hi] |= m & (louder < 0)
    return hit


def pair_partners(base_hz: np.ndarray, partner_hz: np.ndarray, partner_amp: np.ndarray):
    """Give each channel's first operator a further partial at a multiplier ratio, for every frame.

    ``base_hz``: (n_frames, n_channels) base frequency (MULT=1) of channels
    whose second operator plays a partial (<= 0: channel silent);
    ``partner_hz``/``partner_amp``: (n_frames, n_spare) spare partials in
    order of preference (amp 0: none; the tracker gives those in bands no
    channel plays first, each group loudest first: :func:`empty_bands_first`).
    In channel order, each channel takes the first untaken spare partial
    within 2% of ``base * MULT`` for some MULT.  Returns (mult1, amp1, hz1), each (n_frames, n_channels): the MULT
    register value, amplitude and frequency of the partial taken, with
    mult1 = -1 and amp1 = hz1 = 0 where none fits.
    """
    n, nv = base_hz.shape
    mult1 = np.full((n, nv), -1, np.int64)
    amp1 = np.zeros((n, nv))
    hz1 = np.zeros((n, nv))
    if n == 0 or nv == 0 or partner_hz.shape[1] == 0:
        return mult1, amp1, hz1
    log_base = _log2_hz(np.maximum(base_hz, 1e-6))
    log_partner = _log2_hz(partner_hz)
    fits = _factor_table(log_partner, log_base)                          # (n, channels, spare)
    fits &= (base_hz > 0)[:, :, None] & (partner_amp > 0)[:, None, :]
    taken = np.zeros(partner_hz.shape, bool)
    rows = np.arange(n)
    for c in range(nv):
        hits = fits[:, c, :] & ~taken
        has = hits.any(axis=1)
        k = np.argmax(hits, axis=1)
        r, k = rows[has], k[has]
        taken[r, k] = True
        mult1[r, c] = _SORTED_REGS[_factor_fit(log_partner[r, k] - log_base[r, c])[0]]
        amp1[r, c] = partner_amp[r, k]
        hz1[r, c] = partner_hz[r, k]
    return mult1, amp1, hz1


def shared_base(base_hz, amp2, partner_hz, mult1, amp1):
    """The channel pitch that splits a pair's tuning error between its two operators.

    Operator 2 plays ``base_hz`` (times its MULT), operator 1 ``base * MULT1``
    where the partner is at ``partner_hz``; the base becomes the
    power-weighted mean, in log frequency, of the two partials' own bases,
    so the louder partial stays closer to its pitch.  Unpaired channels
    (``mult1 < 0``) keep ``base_hz``.
    """
    paired = (mult1 >= 0) & (base_hz > 0) & (partner_hz > 0)
    w2, w1 = np.asarray(amp2, np.float64) ** 2, np.where(paired, amp1, 0.0) ** 2
    own1 = np.where(paired, partner_hz, 1.0) / _MULT_VALUES[np.maximum(mult1, 0)]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_base = (w2 * np.log(np.where(paired, base_hz, 1.0)) + w1 * np.log(own1)) / (w1 + w2)
    return np.where(paired & (w1 + w2 > 0), np.exp(log_base), base_hz)


# other MULT2 values a held note may take so its operator 1 finds a partner (register
# values; adplay, 23 clips: with 2 and 3 `model` 2.730 -> 2.711 dB, `sines` 3.555 -> 3.562;
# with 2-4 2.721 / 3.558; with 2-6, 8 and 10, partners chosen by power, 2.729 / 3.591):
# melody 2.43 -> 2.23, trumpet 2.68 -> 2.59, flute 2.27 -> 2.19, opl_random_13 2.64 -> 2.45,
# opl_random_12 2.33 -> 2.44 (the model)
_NOTE_MULT2 = np.array([1, 2, 3])
_NOTE_SPARE = 16              # the first spare partials looked at (empty bands first)
_BASE_MAX_HZ = 6208.0         # the highest base pitch (F-number 1023, block 7)


def _glides(loudest_hz: np.ndarray, peaks_hz: np.ndarray) -> np.ndarray:
    """(n_frames - 1,) bool: frame ``i + 1``'s loudest partial glides on from frame ``i``'s.

    ``loudest_hz`` (n_frames,) each frame's loudest partial (0: none), ``peaks_hz``
    (n_frames, k) all its peaks (0: none).  A glide: frame ``i``'s pitch is gone
    from frame ``i + 1``'s peaks (nothing within _TRACK_TOL_CENTS), and the loudest
    partial's step before or after goes the same way
    (:func:`~.base.glide_neighbours`).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        cents = 1200 * np.log2(np.where(loudest_hz > 0, loudest_hz, np.nan))
        near = np.abs(1200 * np.log2(peaks_hz[1:] / loudest_hz[:-1, None])) <= _TRACK_TOL_CENTS
    before, after = glide_neighbours(np.diff(cents))
    return ~near.any(axis=1) & (before | after)


def band_leaders_first(pf: np.ndarray, *, bands: np.ndarray | None = None) -> np.ndarray:
    """(n_frames, n_peaks) the order that plays each frame's mel bands before their second partials.

    ``pf`` (n_frames, n_peaks) peak frequencies, loudest first (0: none, at
    the end).  A peak is its band's leader where no louder peak lies in its
    mel band (the band its sine atom is loudest in, as
    :func:`match_band_power` reads it); the leaders come first, then the
    others, each group loudest first.  The channels go to the leaders: the
    yardstick hears a band's power, which the band's loudest partial plays
    once :func:`match_band_power` has raised it by the band's other
    partials (at most BAND_MATCH_DB), while a band with no partial played
    stays empty.  Partials share bands above about 2.5 kHz for speech
    (bands 150-300 Hz wide there).  adplay, 23 clips (2026-12-05): `model`
    2.064 -> 2.052 dB (the 15 tuned on 2.073 -> 2.060, held out 2.048 ->
    2.037; opl_random_12 1.98 -> 1.86, wormintr 1.56 -> 1.49, speech_es 2.93
    -> 2.89, but doofus 2.73 -> 2.79, strings 1.93 -> 1.97, speech_a 2.85 ->
    2.88), `fast` 2.129 -> 2.105, `best` 2.055 -> 2.036, `sines` 3.147 ->
    3.116 (speech_gb 4.17 -> 4.01).  Leaders by interpolated height instead
    of this order: 2.053 / 3.115; demoting only partials at least 3 or 6 dB
    under their band's leader: 2.062 / 2.060.
    """
    valid = pf > 0
    band = sine_bands(pf) if bands is None else bands
    # each row's peaks grouped by band, in their order within a band: the first of a group
    # leads it
    follower = _band_followers(np.where(valid, band, spectrum.N_MELS).astype(np.int16))
    group = np.where(valid, follower, 2).astype(np.int8)   # 0 leader, 1 follower, 2 no peak
    return np.argsort(group, axis=1, kind="stable")


def _band_followers(band: np.ndarray) -> np.ndarray:
    """(n_frames, k) bool: which entries have an earlier one in their row with the same
    ``band`` (so each row's first of a band leads it; :func:`band_leaders_first` and
    :func:`pick_peaks`' band leaders)."""
    n, k = band.shape
    order = np.argsort(band, axis=1, kind="stable")
    grouped = np.take_along_axis(band, order, axis=1)
    follows = np.zeros((n, k), bool)
    follows[:, 1:] = grouped[:, 1:] == grouped[:, :-1]
    follower = np.empty((n, k), bool)
    np.put_along_axis(follower, order, follows, axis=1)
    return follower


def sine_bands(f_hz: np.ndarray) -> np.ndarray:
    """The mel band a sine at ``f_hz`` is loudest in (its atom's top band, as
    :func:`match_band_power` reads it; 0 where ``f_hz`` <= 0)."""
    from .pursuit import atom_rows, atom_top_band
    f_hz = np.asarray(f_hz)
    return atom_top_band(atom_rows(np.zeros(f_hz.shape, np.int64), np.where(f_hz > 0, f_hz, 0.0)))


def empty_bands_first(spare_hz: np.ndarray, played_hz: np.ndarray, *,
                      spare_bands: np.ndarray | None = None,
                      played_bands: np.ndarray | None = None) -> np.ndarray:
    """(n_frames, n_spare) the order that offers the first operators the spare partials in
    mel bands no channel plays before the others, each group in the given order.

    ``spare_hz`` (n_frames, n_spare) spare partials (0: none, at the end),
    ``played_hz`` (n_frames, n_channels) the channels' partials (0: none).
    A partner in a band some channel already plays adds to a band
    :func:`match_band_power` fills anyway; one in an empty band fills it.
    adplay, 23 clips (2026-12-05, after :func:`band_leaders_first`):
    `model` 2.052 -> 2.032 dB (the 15 tuned on 2.060 -> 2.034, held out
    2.037 -> 2.029; speech 2.76 -> 2.69, speech_a 2.88 -> 2.76, trumpet
    2.08 -> 2.01, strings 1.97 -> 1.92, but opl_random_11 1.78 -> 1.83),
    `fast` 2.105 -> 2.090, `best` 2.036 -> 2.019, `sines` 3.116 -> 3.000
    (speech 3.78 -> 3.53).  Also putting a band's second spare partial after
    the rest: 2.029 (the 15 tuned on 2.039).
    """
    n = played_hz.shape[0]
    rows = np.arange(n)[:, None]
    band = sine_bands(played_hz) if played_bands is None else played_bands
    played = np.zeros((n, spectrum.N_MELS), bool)
    on = played_hz > 0
    played[np.broadcast_to(rows, on.shape)[on], band[on]] = True
    taken = played[rows, sine_bands(spare_hz) if spare_bands is None else spare_bands]
    group = np.where(spare_hz > 0, taken.astype(np.int8), 2)
    return np.argsort(group, axis=1, kind="stable")


# the loudest peaks picked per channel (plus 8; :func:`peaks_for`); :func:`pick_peaks` adds
# the loudest peak of every mel band those leave empty (band leaders), down to 60 dB
# under the frame's loudest.  The tracker gives its channels to band leaders first
# (:func:`band_leaders_first`) and its first operators' partners come from empty bands
# first (:func:`empty_bands_first`), so what pays is a leader in every band rather than
# more of the loudest: adplay, 23 clips (2026-12-05), `sines` with 3 / 5 / 6 of the loudest
# a channel and no leaders 3.000 / 2.909 / 2.865 dB; with the leaders, 3 / 2 / 1 / 0 a
# channel 2.816 / 2.785 / 2.724 / 2.719 (at 0: speech 3.53 -> 3.04, galway 5.99 -> 4.54,
# smkerem 4.78 -> 4.28, opl_random_12 2.48 -> 2.59, the one clip further); leaders only
# within 50 or 40 dB of the frame's loudest scored 2.752 / 2.851 against 2.729 at 1 a
# channel (docs/design.md, Band leaders).  The model's tracker takes 1
# (model.LOUDEST_PER_CHANNEL)
PEAKS_PER_CHANNEL = 0


def peaks_for(n_voices: int, *, per_channel: int = PEAKS_PER_CHANNEL) -> int:
    """The loudest peaks picked per frame for ``n_voices`` channels, ``per_channel`` a
    channel plus 8 (the band leaders come on top: see PEAKS_PER_CHANNEL)."""
    return int(per_channel) * int(n_voices) + 8


class SinesMethod:
    """Stateful across blocks of frames: tracks carry over block boundaries."""

    name = "sines"
    jump_share = None           # levels glide through pitch jumps (see model.JUMP_SHARE)

    def __init__(self, *, n_voices: int = 18, max_spares: int | None = None):
        """``max_spares``: at most this many spare peaks offered to the first operators as
        partners each frame (those in bands no channel plays first; None: all)."""
        self.n_voices = int(n_voices)
        self.max_spares = max_spares
        self.track_hz = np.zeros(self.n_voices)       # frequency each channel played last
        self.track_on = np.zeros(self.n_voices, bool)
        self.held_mult2 = np.zeros(self.n_voices, np.int64)   # MULT2 of each channel's held note (0: none)
        self.played_power = None      # the last block's mel power as played (match_band_power)

    def process(self, mag: np.ndarray, freqs_hz: np.ndarray, *, peaks=None,
                power: np.ndarray | None = None) -> VoiceFrames:
        """``peaks``: this frame block's :func:`pick_peaks` with ``n_peaks=peaks_for(n_voices)``,
        if known; ``power``: its mel power (:func:`~.pursuit.mel_power`), if known."""
        n_frames = mag.shape[0]
        nv = self.n_voices
        out = VoiceFrames.empty(n_frames, nv)
        out.cnt[:] = 1
        pf, pa = peaks if peaks is not None else pick_peaks(mag, freqs_hz, n_peaks=peaks_for(nv))
        # usable peaks first, loudest first (a stable sort keeps the order)
        ok = (pa > 0) & (pf > 20.0) & (pf < 22000.0)
        order = np.argsort(~ok, axis=1, kind="stable")
        pf = np.where(np.take_along_axis(ok, order, axis=1), np.take_along_axis(pf, order, axis=1), 0.0)
        pa = np.where(pf > 0, np.take_along_axis(pa, order, axis=1), 0.0)
        n_ok = ok.sum(axis=1)
        # the loudest of each mel band first: a channel adds more where its band has none
        bands = sine_bands(pf)
        order = band_leaders_first(pf, bands=bands)
        pf, pa, bands = (np.take_along_axis(a, order, axis=1) for a in (pf, pa, bands))
        # -- track: each channel follows one of the nv partials first in that order ------
        peak = self._track(pf[:, :nv], np.minimum(n_ok, nv), pf)       # (n, nv) peak per channel
        on = peak >= 0
        f_c = np.where(on, np.take_along_axis(pf, np.maximum(peak, 0), axis=1), 0.0)
        a_c = np.where(on, np.take_along_axis(pa, np.maximum(peak, 0), axis=1), 0.0)
        # -- op2 plays the channel's partial; op1 a partner at a multiplier ratio ----
        on = a_c > 0
        spare = nv + np.argsort(-pa[:, nv:], axis=1, kind="stable")   # loudest first
        # ... those in bands no channel's partial plays first
        first = empty_bands_first(
            np.take_along_axis(pf, spare, axis=1), f_c,
            spare_bands=np.take_along_axis(bands, spare, axis=1),
            played_bands=np.take_along_axis(bands, np.maximum(peak, 0), axis=1))
        spare = np.take_along_axis(spare, first, axis=1)[:, :self.max_spares]
        spare_hz, spare_amp = (np.take_along_axis(a, spare, axis=1) for a in (pf, pa))
        m2 = self._note_mult2(f_c, on, R.carrier_mult(np.where(on, f_c, 440.0)),
                              spare_hz, spare_amp)
        base = np.where(on, f_c / _MULT_VALUES[m2], 0.0)
        m1, a1, h1 = pair_partners(base, spare_hz, spare_amp)
        base = shared_base(base, a_c, h1, m1, a1)
        m1 = np.where(m1 < 0, m2, m1)        # no partner: op1 (TL 63) doubles op2 in phase
        out.mult2[:] = np.where(on, m2, 1)
        out.mult1[:] = np.where(on, m1, 1)
        out.amp2[:] = a_c
        out.amp1[:] = np.where(on, a1, 0.0)
        fnum, block = R.hz_to_fnum(np.where(on, base, 440.0), mult=1)
        out.fnum[:] = np.where(on, fnum, 0)
        out.block[:] = np.where(on, block, 0)
        if power is None:
            from .pursuit import mel_power
            power = mel_power(mag)
        self.played_power = match_band_power(out, power)
        return out

    def _note_mult2(self, f_c, on, m2_min, spare_hz, spare_amp):
        """(n_frames, n_voices) MULT2 register value per channel: fixed while its key is held.

        Operator 2 plays the channel's partial ``f_c`` at base * MULT2.  The
        usual MULT2 (``m2_min``: 1, or what reaches a partial above 6.2 kHz)
        lets operator 1 pair only with partials at whole multiples (and half)
        of it; MULT2 = 2 or 3 (base a half or a third of the partial) also
        pairs ratios such as 3/2, 4/3 or 5/3.  Such a MULT2 is taken for a
        held note (a run of frames the channel stays keyed, whatever partial
        it follows) where the usual one finds a partner in none of its frames
        and another does, the one that does in the most frames (decided on
        the frames of the block at hand; a note held into the next block keeps
        it).  A chosen MULT2 stays while the key is held (only a partial it
        cannot reach, above 6.2 kHz * MULT2, falls back to the usual one):
        players apply a frame's register writes a few samples apart (Nuked's
        write buffer), so a MULT2 change with its F-number change leaves the
        wrong frequency for those samples, a phase jump heard as sidebands
        (MULT2 alternating every frame: -29 dB at +-30 Hz; chosen afresh every
        frame, melody.wav scored 5.8 dB instead of 2.4).
        """
        n, nv = f_c.shape
        out = np.array(m2_min, np.int64, copy=True)
        if n == 0:
            return out
        k = min(_NOTE_SPARE, spare_hz.shape[1])
        sh, sa = spare_hz[:, :k], spare_amp[:, :k]
        opts = _NOTE_MULT2                                                 # register values
        mv = _MULT_VALUES[opts]
        # in log2 units: the spare partials over the channel's partial, (n, ch, k)
        ratio = _log2_hz(sh)[:, None, :] - _log2_hz(np.maximum(f_c, 1e-6))[:, :, None]
        other = (np.abs(ratio) > _LOG2_FIT[1]) & (sa > 0)[:, None, :]       # not the partial itself
        paired = np.zeros((n, nv, opts.size), bool)
        for m, log_m in enumerate(np.log2(mv).tolist()):
            paired[:, :, m] = (_factor_fit(ratio + log_m, index=False)[1] & other).any(axis=2)   # spare / base
        usable = (opts >= m2_min[:, :, None]) & (f_c[:, :, None] / mv <= _BASE_MAX_HZ)
        paired &= usable & on[:, :, None]                                  # (n, ch, M)
        held = np.zeros((n, nv), bool)                                     # keyed since last frame
        held[0] = on[0] & (self.held_mult2 > 0)
        held[1:] = on[1:] & on[:-1]
        for c in range(nv):
            start = np.flatnonzero(~held[:, c])
            if start.size == 0 or start[0] != 0:
                start = np.concatenate([[0], start])
            count = np.add.reduceat(paired[:, c].astype(np.int64), start, axis=0)   # (notes, M)
            whole = np.logical_and.reduceat(usable[:, c] | ~on[:, c, None], start, axis=0)
            count = np.where(whole, count, -1)
            usual = opts[None, :] == m2_min[start, c][:, None]
            pick = np.where((count * usual).sum(axis=1) > 0, -1, np.argmax(count, axis=1))
            best = np.where((pick >= 0) & (count.max(axis=1) > 0), opts[np.maximum(pick, 0)], -1)
            if held[0, c]:
                best[0] = self.held_mult2[c]                   # a note held from the last block
            note = np.repeat(best, np.diff(np.append(start, n)))
            fine = (note > 0) & on[:, c] & (note >= m2_min[:, c])
            fine &= f_c[:, c] / _MULT_VALUES[np.maximum(note, 0)] <= _BASE_MAX_HZ
            out[:, c] = np.where(fine, note, m2_min[:, c])
        self.held_mult2 = np.where(on[-1], out[-1], 0)
        return out

    def _track(self, pf: np.ndarray, n_played: np.ndarray, peaks_hz: np.ndarray | None = None
               ) -> np.ndarray:
        """Which partial each channel plays, per frame: (n_frames, n_voices), -1 for none.

        ``pf`` (n_frames, >= n_played) partials, loudest first; the first
        ``n_played`` of each frame are played (at most ``n_voices``, so all
        find a channel).  ``peaks_hz``: all of each frame's peaks (default
        ``pf``).  A channel whose partial moved at most _TRACK_TOL_CENTS (70) continues it
        (key held; closest pairs first), and so does the loudest partial,
        moving less than LEAD_CENTS, that of the last frame's loudest where
        neither found another (within a block), if it falls from under
        LEAD_MAX_HZ or glides (:func:`_glides`); the other partials take free
        channels in order, silent ones first.
        """
        n, nv = pf.shape[0], self.n_voices
        width = min(nv, pf.shape[1])
        cur = np.where(np.arange(width)[None, :] < n_played[:, None], pf[:, :width], 0.0)
        # what each frame continues: frame 0 the channels of the previous block, indexed
        # by channel; later frames the partials of the frame before, indexed by partial
        prev = np.zeros((n, nv))
        prev[0] = np.where(self.track_on, self.track_hz, 0.0)
        prev[1:, :width] = cur[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            cents = 1200 * np.abs(np.log2(cur[:, :, None] / prev[:, None, :]))
        ok = (cur[:, :, None] > 0) & (prev[:, None, :] > 0) & (cents <= _TRACK_TOL_CENTS)
        link = greedy_match_frames(np.where(ok, cents, np.inf))    # (n, width)
        if n > 1 and width:                             # the loudest: a kick's drop, a glide
            lead = np.zeros(n, bool)
            lead[1:] = ((link[1:, 0] < 0) & ~(link[1:] == 0).any(axis=1)
                        & (cur[1:, 0] > 0) & (prev[1:, 0] > 0) & (cents[1:, 0, 0] <= LEAD_CENTS))
            kick = (prev[1:, 0] < LEAD_MAX_HZ) & (cur[1:, 0] < prev[1:, 0])
            lead[1:] &= kick | _glides(cur[:, 0], pf if peaks_hz is None else peaks_hz)
            link[lead, 0] = 0
        link = link.tolist()
        counts = n_played.tolist()
        played: list[int] = []                  # channel of each played partial, frame by frame
        chan_prev = list(range(nv))              # frame 0 links to channels directly
        busy = set(np.flatnonzero(self.track_on).tolist())     # channels keyed last frame
        channels = range(nv)
        for i in range(n):
            chan = [chan_prev[q] if q >= 0 else -1 for q in link[i][:counts[i]]]
            if -1 in chan:
                # new partials take free channels: silent ones first, then those released now
                free = iter([c for c in channels if c not in busy]
                            + sorted(busy.difference(chan)))
                chan = [c if c >= 0 else next(free) for c in chan]
            busy = set(chan)
            chan_prev = chan
            played += chan
        chans = np.full((n, nv), -1, np.int64)
        frame = np.repeat(np.arange(n), n_played)
        chans[frame, played] = np.arange(frame.size) - np.repeat(np.cumsum(n_played) - n_played, n_played)
        if n:
            last = chans[-1]
            on = last >= 0
            self.track_hz[on] = cur[-1, last[on]]
            self.track_on[:] = on
        return chans


# each played partial moves towards its mel band's power by at most this much (dB).
# adplay, 23 clips, `model`: 2.388 -> 2.321 dB (speech_gb 3.74 -> 3.48, smkerem 1.93 ->
# 1.76, galway 1.76 -> 1.59, flute 1.96 -> 1.78, guitar 1.82 -> 1.68; opl_random_13
# 2.46 -> 2.73, opl_random_21/22 +0.05); raising only (at most 6 / 10 dB) or a 4 dB cap
# (3 dB down): worse on the 10 clips tried (the 5 speech clips, doofus, organ, flute,
# melody, chord: 2.700 / 2.710 / 2.696 against 2.684); matched in the sines-only option
# alone (the mix's tracker as it was): 2.395 over the 23.  Rechecked 2026-12-05 with the
# band order (band_leaders_first, empty_bands_first): 4.5 / 6 / 9 dB 2.035 / 2.032 /
# 2.029 (the 15 tuned on 2.039 / 2.034 / 2.034)
BAND_MATCH_DB = 6.0


def match_band_power(voices: VoiceFrames, power: np.ndarray) -> np.ndarray:
    """Scale the tracked partials so each mel band plays the input's power (in place);
    returns the (n_frames, N_MELS) mel power they then play
    (:func:`~.loudness.voice_power`).

    A peak's height is what a partial alone would show; the band around it
    also holds the partials and noise the channels do not play, the
    spread of a partial whose pitch or level moves within the window, and
    the rest of a band that several partials share.  The yardstick hears
    bands, not peaks: per frame and band, the power the sines play
    (``voices``: sine channels, their partials' atoms) is compared with the
    input's ``power`` (n_frames, N_MELS), and every partial moves by its
    band's ratio (the band its atom is loudest in), at most BAND_MATCH_DB.
    """
    from .loudness import operator_atom_rows, voice_power
    from .pursuit import atom_top_band, atoms_at
    rows_op = operator_atom_rows(voices)
    units = tuple(atoms_at(r) for r in rows_op)             # (n, ch, N_MELS) per operator
    lim = np.float32(10 ** (BAND_MATCH_DB / 20))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.sqrt(power.astype(np.float32) / voice_power(voices, units))
    ratio = np.clip(np.nan_to_num(ratio, nan=1.0, posinf=lim), 1 / lim, lim)
    rows = np.arange(power.shape[0])[:, None]
    for a, r in zip((voices.amp2, voices.amp1), rows_op):
        band = atom_top_band(r)                             # the band each partial is loudest in
        a *= np.where(a > 0, ratio[rows, band], 1.0).astype(a.dtype)
    return voice_power(voices, units)


def partner_table(pf: np.ndarray, pa: np.ndarray, *, n_main: int):
    """For each of the ``n_main`` loudest peaks, the loudest other peak its channel's first operator can play.

    ``pf``/``pa``: (n_frames, n_peaks) peaks, loudest first (amp 0 = none).
    A channel whose second operator plays peak p (MULT ``carrier_mult(f_p)``)
    plays peak q on its first operator when ``f_q / base`` is a multiplier
    value within 2%.  Returns (mult1, partner_hz, partner_amp), each
    (n_frames, n_main); mult1 -1 where no peak fits.
    """
    fm, am = pf[:, :n_main], pa[:, :n_main]
    m2 = R.carrier_mult(np.where(am > 0, fm, 440.0))
    base = np.maximum(fm / _MULT_VALUES[m2], 1e-6)
    log_pf = _log2_hz(pf)
    log_base = _log2_hz(base)
    fits = _factor_table(log_pf, log_base)                                   # (n, main, peaks)
    fits &= pa[:, None, :] > 0
    k = np.arange(pf.shape[1])
    fits &= k[None, None, :] != np.arange(fm.shape[1])[None, :, None]          # not itself
    apart = log_pf[:, None, :] - _log2_hz(np.maximum(fm, 1e-6))[:, :, None]   # nor at its pitch
    fits &= (apart < _LOG2_FIT[0]) | (apart > _LOG2_FIT[1])
    first = np.argmax(fits, axis=2)                                          # loudest fitting
    has = fits.any(axis=2) & (am > 0)
    j = _factor_fit(np.take_along_axis(log_pf, first, axis=1) - log_base)[0]
    mult1 = np.where(has, _SORTED_REGS[j], -1)
    q_f = np.where(has, np.take_along_axis(pf, first, axis=1), 0.0)
    q_a = np.where(has, np.take_along_axis(pa, first, axis=1), 0.0)
    return mult1, q_f, q_a
