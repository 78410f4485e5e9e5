"""The one spectrum implementation of wav2vgm: frames -> spectra -> dB.

Used by the converter (:func:`magnitude_spectra`), the inverse model's
features (via :func:`magnitude_spectra`) and the quality metric
(:func:`logmel_distance`), so all three see exactly the same numbers.

Conventions
-----------
* Audio is mono float, full scale = 1.0; analysis runs at
  :data:`ANALYSIS_RATE_HZ` (44.1 kHz) unless stated otherwise.
* Arrays are ``(n_frames, n_bins)``: one row per frame, one column per bin.
* Spectra are normalised so that a full-scale sine (amplitude 1.0) at exactly
  a bin frequency reads power 1.0 (0 dB) at that bin, whatever the window.
* The mel scale is Slaney's (linear below 1 kHz, logarithmic above, as in
  ``librosa``'s default ``htk=False``); the mel triangles have a peak weight
  of 1.0 (no area normalisation), so a full-scale sine reads about 0 dB in
  its mel band.

Only numpy and scipy are needed; matplotlib is optional (``--plot``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import gcd

import numpy as np
import scipy.fft

from .errors import OutputError, ParameterError
from .resample import resample_poly

ANALYSIS_RATE_HZ = 44100

# log-mel analysis (the quality metric and logmel_db)
N_FFT = 2048
HOP = 512
N_MELS = 80
MEL_F_MIN_HZ = 30.0
MEL_F_MAX_HZ = 16000.0
TINY_POWER = 1e-12                       # power floor before log10 (-120 dB)
TINY_DB = -120.0                         # = 10*log10(TINY_POWER)

# the quality metric
ACTIVE_RANGE_DB = 60.0                   # frames count if their peak is this close to the loudest cell
MAX_GAIN_DB = 40.0                       # the global gain is searched in [-MAX_GAIN_DB, +MAX_GAIN_DB]
_SILENT = np.float32(-1e9)               # a test cell that is digital silence: no gain can raise it


# ---------------------------------------------------------------------------
# checks

def _check_positive_int(name: str, value) -> int:
    try:
        iv = int(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a positive integer, got {value!r}") from None
    if iv != value or iv < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return iv


def _mono(samples, name: str = "samples") -> np.ndarray:
    """``samples`` as a 1-D float array with finite values."""
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ParameterError(f"{name} must be mono (1-D), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise ParameterError(f"{name} must be real numbers, got dtype {x.dtype}")
        x = x.astype(np.float64)
    if x.size and not np.isfinite(x).all():
        raise ParameterError(f"{name} contains NaN or infinite values")
    return x


def _to_analysis_rate(x: np.ndarray, rate_hz) -> np.ndarray:
    """Resample 1-D ``x`` from ``rate_hz`` to 44.1 kHz (polyphase); float32."""
    rate = _check_positive_int("rate_hz", rate_hz)
    x = x.astype(np.float32, copy=False)
    if rate == ANALYSIS_RATE_HZ or x.size == 0:
        return x
    g = gcd(rate, ANALYSIS_RATE_HZ)
    return resample_poly(x, ANALYSIS_RATE_HZ // g, rate // g).astype(np.float32)


# ---------------------------------------------------------------------------
# framing and spectra

def frame_signal(samples, *, hop: int, n_fft: int, centre: bool = True) -> np.ndarray:
    """(n_frames, n_fft) frames of 1-D ``samples``, a read-only strided view.

    ``n_frames = ceil(len(samples) / hop)`` (0 for empty input).  With
    ``centre=True`` frame ``i`` is centred at sample ``i*hop`` (its first
    sample is ``i*hop - n_fft//2``); otherwise it starts at ``i*hop``.  The
    signal is zero-padded at both ends as needed.
    """
    x = _mono(samples)
    hop = _check_positive_int("hop", hop)
    n_fft = _check_positive_int("n_fft", n_fft)
    n_frames = -(-x.size // hop)
    if n_frames == 0:
        return np.zeros((0, n_fft), x.dtype)
    left = n_fft // 2 if centre else 0
    total = (n_frames - 1) * hop + n_fft
    padded = np.zeros(max(total, left + x.size), x.dtype)
    padded[left:left + x.size] = x
    view = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]
    return view


def hann_periodic(n: int) -> np.ndarray:
    """(n,) float64 periodic Hann window, computed as ``scipy.signal.get_window("hann", n)``
    does (bit for bit; scipy.signal takes about a second to import)."""
    if n == 1:
        return np.ones(1)
    fac = np.linspace(-np.pi, np.pi, n + 1)
    w = np.zeros(n + 1)
    w += 0.5 * np.cos(0 * fac)
    w += 0.5 * np.cos(fac)
    return w[:-1]


def _window(window, n: int) -> np.ndarray:
    """A periodic window of length ``n`` by name (scipy's names) or as given (array)."""
    if isinstance(window, str) and window == "hann":
        w = hann_periodic(n)
    elif isinstance(window, str) or isinstance(window, tuple):
        from scipy.signal import get_window       # imported only when needed: it takes a second
        try:
            w = get_window(window, n, fftbins=True)
        except (ValueError, TypeError) as exc:
            raise ParameterError(f"unknown window {window!r}: {exc}") from None
    else:
        w = np.asarray(window, dtype=np.float64)
        if w.shape != (n,):
            raise ParameterError(f"window has shape {w.shape}, frames have length {n}")
    s = float(np.sum(w))
    if not np.isfinite(s) or s <= 0:
        raise ParameterError(f"window must have a positive sum, got {s!r}")
    return w


def _scaled_rfft(frames, window, n_fft, remove_dc=False, overwrite=False):
    """(rfft of windowed ``frames``, scale): ``|spectrum|**2 * scale`` is the normalised power.

    ``remove_dc``: subtract each frame's window-weighted mean before windowing.
    ``overwrite``: a float32/float64 ``frames`` may be windowed in place (no copy)."""
    f = np.asarray(frames)
    if f.ndim != 2:
        raise ParameterError(f"frames must be 2-D (n_frames, frame_length), got shape {f.shape}")
    dtype = np.float32 if f.dtype == np.float32 else np.float64
    length = f.shape[1]
    if length < 1:
        raise ParameterError(f"frame length must be at least 1, got {length}")
    n = length if n_fft is None else _check_positive_int("n_fft", n_fft)
    if n < length:
        raise ParameterError(f"n_fft ({n}) is shorter than the frames ({length})")
    w = _window(window, length)
    scale = dtype(1.0 / (np.sum(w) / 2.0) ** 2)
    w = w.astype(dtype)
    if remove_dc:
        x = f.astype(dtype, copy=not overwrite)         # one array, changed in place
        x -= ((x @ w) / w.sum())[:, None]
        x *= w
    else:
        x = f.astype(dtype, copy=False) * w
    spec = scipy.fft.rfft(x, n=n, axis=1, workers=-1)
    return spec, scale, dtype


def power_spectrum(frames, *, window="hann", n_fft: int | None = None) -> np.ndarray:
    """(n_frames, n_fft//2+1) power of windowed ``frames`` (n_frames, frame_length).

    ``window``: a scipy window name (periodic) or an array of frame_length.
    ``n_fft`` (default frame_length) >= frame_length zero-pads each frame.
    Normalised by ``(sum(window)/2)**2`` so a full-scale sine at a bin
    frequency gives power 1.0 (0 dB) at its bin.  float32 in -> float32 out.
    """
    spec, scale, dtype = _scaled_rfft(frames, window, n_fft)
    power = spec.real * spec.real + spec.imag * spec.imag
    power *= scale
    return power.astype(dtype, copy=False)


def magnitude_spectra(frames, *, window="hann", n_fft: int | None = None,
                      remove_dc: bool = False, overwrite: bool = False) -> np.ndarray:
    """(n_frames, n_fft//2+1) float32 linear amplitudes (full-scale bin-centred sine = 1.0).

    The square root of :func:`power_spectrum` (taken as the complex modulus,
    a quarter of the time); ``frames`` (n_frames, frame_length), ``window`` a
    name or an array of frame_length, ``n_fft`` >= frame_length zero-pads.
    ``remove_dc``: each frame's window-weighted mean is subtracted first, which
    removes a constant offset from the windowed frame exactly.  ``overwrite``
    (with ``remove_dc``): a float32 ``frames`` is windowed in place, saving a
    copy; its samples are lost.
    """
    spec, scale, _ = _scaled_rfft(np.asarray(frames, dtype=np.float32), window, n_fft,
                                  remove_dc=remove_dc, overwrite=overwrite)
    mag = np.abs(spec)
    mag *= np.float32(np.sqrt(scale))
    return mag


def db(power, *, floor_db: float = -120.0) -> np.ndarray:
    """``10*log10(max(power, 10**(floor_db/10)))`` (keeps float32 as float32).

    Floored cells read exactly ``floor_db`` (float32 ``log10`` of the floor
    power is off by an ulp in some numpy releases).
    """
    p = np.asarray(power)
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float64)
    tiny = p.dtype.type(10.0 ** (float(floor_db) / 10.0))
    out = p.dtype.type(10.0) * np.log10(np.maximum(p, tiny))
    return np.maximum(out, p.dtype.type(floor_db), out=out)


def spectra_db(samples, *, rate_hz: int = ANALYSIS_RATE_HZ, n_fft: int = N_FFT,
               hop: int) -> np.ndarray:
    """(n_frames, n_fft//2+1) float32 dB of centred hann frames of mono ``samples``.

    ``samples`` at ``rate_hz`` are first resampled to 44.1 kHz; ``hop`` is in
    samples at 44.1 kHz.
    """
    x = _to_analysis_rate(_mono(samples), rate_hz)
    frames = frame_signal(x, hop=hop, n_fft=n_fft)
    return db(power_spectrum(frames), floor_db=TINY_DB).astype(np.float32)


def _check_band(rate_hz, n_fft, f_min_hz, f_max_hz) -> tuple[int, int, float, float]:
    rate = _check_positive_int("rate_hz", rate_hz)
    n = _check_positive_int("n_fft", n_fft)
    if n < 2:
        raise ParameterError(f"n_fft must be at least 2, got {n_fft!r}")
    lo, hi = float(f_min_hz), float(f_max_hz)
    if not (0.0 < lo < hi <= rate / 2.0):
        raise ParameterError(f"need 0 < f_min_hz < f_max_hz <= rate_hz/2, "
                             f"got f_min_hz={f_min_hz!r}, f_max_hz={f_max_hz!r}, rate_hz={rate}")
    return rate, n, lo, hi


def _interpolation_columns(centres_hz: np.ndarray, rate_hz: int, n_fft: int) -> np.ndarray:
    """(n_fft//2+1, len(centres_hz)): linear interpolation weights between FFT bins."""
    x = np.clip(centres_hz / (rate_hz / n_fft), 0.0, n_fft // 2)
    lo = np.minimum(np.floor(x).astype(int), n_fft // 2 - 1)
    frac = x - lo
    m = np.zeros((n_fft // 2 + 1, centres_hz.size))
    cols = np.arange(centres_hz.size)
    m[lo, cols] = 1.0 - frac
    m[lo + 1, cols] += frac
    return m


def log_bin_frequencies_hz(*, n_bins: int, f_min_hz: float, f_max_hz: float) -> np.ndarray:
    """(n_bins,) centres ``f_min*(f_max/f_min)**(k/(n_bins-1))`` in Hz."""
    n = _check_positive_int("n_bins", n_bins)
    if n < 2:
        raise ParameterError(f"n_bins must be at least 2, got {n_bins!r}")
    lo, hi = float(f_min_hz), float(f_max_hz)
    if not (0.0 < lo < hi):
        raise ParameterError(f"need 0 < f_min_hz < f_max_hz, got {f_min_hz!r}, {f_max_hz!r}")
    return lo * (hi / lo) ** (np.arange(n) / (n - 1))


@lru_cache(maxsize=16)
def log_frequency_matrix(*, rate_hz: int, n_fft: int, n_bins: int, f_min_hz: float,
                         f_max_hz: float) -> np.ndarray:
    """(n_fft//2+1, n_bins) read-only float32 weights: FFT-bin power -> log-bin power.

    ``power_log = power_linear @ matrix``.  Each log bin is a triangle in log
    frequency reaching from its lower to its upper neighbour's centre
    (:func:`log_bin_frequencies_hz`).  Where a log bin is narrower than an
    FFT bin (low frequencies; triangle weights summing to < 1), it takes the
    power linearly interpolated between the two FFT bins around its centre
    instead, so no log bin is empty.
    """
    rate, n, lo, hi = _check_band(rate_hz, n_fft, f_min_hz, f_max_hz)
    centres = log_bin_frequencies_hz(n_bins=n_bins, f_min_hz=lo, f_max_hz=hi)
    f = np.fft.rfftfreq(n, 1.0 / rate)
    pos = (n_bins - 1) * np.log(np.maximum(f, 1e-6) / lo) / np.log(hi / lo)
    tri = np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(n_bins)[None, :]))
    tri[0] = 0.0                                    # DC is no frequency
    narrow = tri.sum(axis=0) < 1.0
    m = np.where(narrow[None, :], _interpolation_columns(centres, rate, n), tri)
    m = m.astype(np.float32)
    m.flags.writeable = False
    return m


# ---------------------------------------------------------------------------
# mel

def hz_to_mel(f_hz) -> np.ndarray:
    """Slaney mel: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above."""
    f = np.asarray(f_hz, dtype=np.float64)
    lin = f / (200.0 / 3.0)
    log = 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def mel_to_hz(mel) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(mel, dtype=np.float64)
    lin = m * (200.0 / 3.0)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log, lin)


def mel_edges_hz(*, n_mels: int = N_MELS, f_min_hz: float = MEL_F_MIN_HZ,
                 f_max_hz: float = MEL_F_MAX_HZ) -> np.ndarray:
    """(n_mels + 2,) the mel bands' edges in Hz, equally spaced in mel: band k rises from
    edge k, peaks at edge k + 1 (its centre) and falls to edge k + 2."""
    return mel_to_hz(np.linspace(hz_to_mel(f_min_hz), hz_to_mel(f_max_hz), n_mels + 2))


@lru_cache(maxsize=16)
def mel_filterbank(*, rate_hz: int = ANALYSIS_RATE_HZ, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   f_min_hz: float = MEL_F_MIN_HZ, f_max_hz: float = MEL_F_MAX_HZ) -> np.ndarray:
    """(n_mels, n_fft//2+1) read-only float32 triangular mel filters.

    Slaney mel scale (:func:`hz_to_mel`), n_mels+2 edges equally spaced in
    mel from f_min_hz to f_max_hz; triangles of peak weight 1.0 (no area
    normalisation).  A band narrower than one FFT bin (would be all zero)
    takes the power linearly interpolated at its centre frequency instead.
    """
    rate, n, lo, hi = _check_band(rate_hz, n_fft, f_min_hz, f_max_hz)
    n_mels = _check_positive_int("n_mels", n_mels)
    edges = mel_edges_hz(n_mels=n_mels, f_min_hz=lo, f_max_hz=hi)
    f = np.fft.rfftfreq(n, 1.0 / rate)
    lower = (f[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - f[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    w = np.maximum(0.0, np.minimum(lower, upper))
    empty = w.sum(axis=1) <= 0.0
    if empty.any():
        w[empty] = _interpolation_columns(edges[1:-1][empty], rate, n).T
    w = w.astype(np.float32)
    w.flags.writeable = False
    return w


def logmel_db(samples, *, rate_hz: int = ANALYSIS_RATE_HZ) -> np.ndarray:
    """(n_frames, 80) float32 log-mel power in dB of mono ``samples`` at ``rate_hz``.

    Resampled to 44.1 kHz first if needed; 2048-point hann frames centred
    every 512 samples (n_frames = ceil(n_samples_44k / 512)); mel power
    floored at 1e-12 (-120 dB) before 10*log10.
    """
    x = _to_analysis_rate(_mono(samples), rate_hz)
    frames = frame_signal(x, hop=HOP, n_fft=N_FFT)
    if frames.shape[0] == 0:
        return np.zeros((0, N_MELS), np.float32)
    power = power_spectrum(frames)                           # (n_frames, 1025) float32
    mel = power @ mel_filterbank().T                         # (n_frames, 80)
    return db(mel, floor_db=TINY_DB).astype(np.float32)


# ---------------------------------------------------------------------------
# the quality metric

@dataclass(frozen=True)
class Score:
    """Result of :func:`logmel_distance` (lower distance is better).

    ``distance_db``: mean absolute log-mel difference over the counted cells;
    ``lag_s``: the test's delay versus the reference (positive = test late);
    ``gain_db``: the global gain added to the test; ``n_frames``: reference
    frames taken into account.
    """

    distance_db: float
    lag_s: float
    gain_db: float
    n_frames: int


def _median(x: np.ndarray):
    """``np.median`` of a 1-D array without NaNs, the same value in a quarter less time."""
    k = x.size // 2
    if x.size % 2:
        return np.partition(x, k)[k]
    p = np.partition(x, (k - 1, k))
    return (p[k - 1] + p[k]) / x.dtype.type(2)


class _Cells:
    """The cells of one lag, flattened, with the fast objective ``distance(g)``.

    ``a``: reference dB clipped at the floor ``F``; ``t``: test dB (``_SILENT``
    for digital silence).  For gain g the test side is ``max(t+g, F)``; a cell
    counts when either side is above ``F``.  Cells that cannot count for any
    ``|g| <= MAX_GAIN_DB`` are dropped up front.
    """

    def __init__(self, a: np.ndarray, t: np.ndarray, floor: float, *, prefiltered=False):
        if not prefiltered:
            keep = (a > floor) | (t > floor - MAX_GAIN_DB - 1.0)
            a, t = a[keep], t[keep]
        self.a, self.t, self.floor = a, t, np.float32(floor)
        self.n_ref = int(np.count_nonzero(self.a > floor))
        self.t_at_floor = np.sort(self.t[self.a <= floor])  # count only if t+g > F
        self.audible_test = bool(np.any(self.t > _SILENT / 2))

    def count(self, g: np.ndarray) -> np.ndarray:
        above = self.t_at_floor.size - np.searchsorted(self.t_at_floor, self.floor - g,
                                                       side="right")
        return self.n_ref + above

    def distance(self, g) -> np.ndarray:
        """Mean |difference| over counted cells for each gain in ``g`` (1-D)."""
        g = np.atleast_1d(np.asarray(g, np.float32))
        out = np.empty(g.size)
        step = max(1, 4_000_000 // max(self.a.size, 1))
        for i in range(0, g.size, step):
            gs = g[i:i + step, None]
            s = np.abs(self.a[None, :] - np.maximum(self.t[None, :] + gs, self.floor)).sum(axis=1,
                                                                                       dtype=np.float64)
            out[i:i + step] = s / np.maximum(self.count(g[i:i + step]), 1)
        return out

    def subsample(self, max_cells: int) -> "_Cells":
        """Every k-th cell (deterministic), at most about ``max_cells`` of them."""
        k = -(-self.a.size // max_cells)
        if k <= 1:
            return self
        return _Cells(self.a[::k], self.t[::k], float(self.floor), prefiltered=True)

    def median_gain(self, n_iter: int = 3, g: float = 0.0) -> float:
        """The L1 optimum for a fixed cell set: median of (a - t) over counted, audible
        cells, iterated from ``g`` because the set depends on the gain."""
        if not self.audible_test:
            return 0.0
        for _ in range(n_iter):
            counted = ((self.a > self.floor) | (self.t + np.float32(g) > self.floor)) \
                & (self.t > _SILENT / 2)
            if not counted.any():
                break
            g_new = float(np.clip(_median(self.a[counted] - self.t[counted]),
                                  -MAX_GAIN_DB, MAX_GAIN_DB))
            if abs(g_new - g) < 1e-4:
                return g_new
            g = g_new
        return g

    def best_gain(self, *, span_db: float = MAX_GAIN_DB) -> tuple[float, float]:
        """(gain_db, distance_db) minimising :meth:`distance` over [-40, 40] dB.

        A 2 dB grid over +-``span_db`` (on a subsample of the cells) finds the
        basin, a golden section search on all cells refines it, and the median
        (L1) estimates are tried too; the best of all candidates wins.
        """
        if not self.audible_test:
            return 0.0, float(self.distance(0.0)[0])
        span = 2.0 * round(min(float(span_db), MAX_GAIN_DB) / 2.0)
        grid = np.linspace(-span, span, int(span) + 1)
        g_grid = float(grid[np.argmin(self.subsample(50_000).distance(grid))])
        lo, hi = max(g_grid - 2.0, -MAX_GAIN_DB), min(g_grid + 2.0, MAX_GAIN_DB)
        r = (np.sqrt(5.0) - 1.0) / 2.0
        x1, x2 = hi - r * (hi - lo), lo + r * (hi - lo)
        f1, f2 = self.distance([x1, x2])
        while hi - lo > 1e-3:
            if f1 <= f2:
                hi, x2, f2 = x2, x1, f1
                x1 = hi - r * (hi - lo)
                f1 = self.distance(x1)[0]
            else:
                lo, x1, f1 = x1, x2, f2
                x2 = lo + r * (hi - lo)
                f2 = self.distance(x2)[0]
        g_gold = x1 if f1 <= f2 else x2
        cands = np.array([g_gold, g_grid, self.median_gain(g=g_gold), self.median_gain()])
        d = self.distance(cands)
        i = int(np.argmin(d))
        return float(cands[i]), float(d[i])


def _reference_cells(r: np.ndarray, floor_db: float):
    """The yardstick's floor, counted reference frames and their clipped cells (flat)."""
    top = float(r.max())
    floor = max(top - floor_db, TINY_DB)
    active = np.flatnonzero(r.max(axis=1) >= top - ACTIVE_RANGE_DB)
    return floor, active, np.maximum(r[active], np.float32(floor)).ravel().astype(np.float32)


def _test_db(t: np.ndarray) -> np.ndarray:
    """Test dB with digital silence marked (no gain can raise it)."""
    return np.where(t <= TINY_DB + 1e-3, _SILENT, t).astype(np.float32)


def _centred(top_db: float, t: np.ndarray) -> tuple[np.ndarray, float]:
    """(test dB moved so its loudest cell meets the reference's ``top_db``, that move in dB).

    The gain search spans +-MAX_GAIN_DB around this move rather than around 0 dB: a
    reference recorded 45 dB or more under its conversion found no gain in reach before.
    """
    audible = t > _SILENT / 2
    if not audible.any():
        return t, 0.0
    centre = top_db - float(t[audible].max())
    return np.where(audible, t + np.float32(centre), t).astype(np.float32), centre


def aligned_distance(reference_db, test_db, *, floor_db: float = 60.0,
                     span_db: float = MAX_GAIN_DB) -> float:
    """The yardstick on log-mel arrays already aligned frame for frame (no lag search).

    ``reference_db``/``test_db``: (n_frames, n_bands) dB of the same shape --
    mel spectra predicted rather than rendered, for instance.  The same
    floor, counted cells and best global gain as :func:`logmel_distance`;
    ``span_db`` narrows the coarse grid the gain search starts on (around
    the reference's and the test's loudest cells), for tests known to lie near.
    """
    r = np.asarray(reference_db, np.float32)
    t = np.asarray(test_db, np.float32)
    if r.shape != t.shape or r.ndim != 2:
        raise ParameterError(f"reference and test must be (frames, bands) of one shape, got "
                             f"{r.shape} and {t.shape}")
    if r.size == 0 or float(r.max()) <= TINY_DB + 1e-3:
        raise ParameterError("reference is silent")
    floor, active, a = _reference_cells(r, floor_db)
    t, _ = _centred(float(r.max()), _test_db(t))
    return _Cells(a, t[active].ravel(), floor).best_gain(span_db=span_db)[1]


def logmel_distance(reference, test, *, rate_hz: int = ANALYSIS_RATE_HZ, max_lag_s: float = 0.1,
                    floor_db: float = 60.0) -> Score:
    """The project's yardstick: log-mel distance in dB between two mono signals.

    Both signals (at ``rate_hz``, resampled to 44.1 kHz) are analysed by
    :func:`logmel_db`.  The test is shifted by the integer frame lag within
    ``±max_lag_s`` (hops of 512 samples) and scaled by the one global gain
    (searched in ±40 dB around the difference of the two sides' loudest cells)
    that minimise the distance; it is padded with silence
    or truncated to the reference's frame count.  Both sides are clipped
    below at ``F = max(reference dB) - floor_db`` (never below -120 dB).
    Counted: in reference frames whose peak is within 60 dB of the loudest
    reference cell, the cells where either side is above ``F``.
    ``distance_db`` is the mean absolute difference over them.

    Digital silence in the test stays silent whatever the gain, so a silent
    test scores the reference's mean height above the floor (about 20-35 dB
    for music).  Raises :class:`ParameterError` for a silent or too short
    reference (< 2048 samples at 44.1 kHz), NaN/inf or non-mono input, and
    bad parameter values.
    """
    ref = _to_analysis_rate(_mono(reference, "reference"), rate_hz)
    tst = _to_analysis_rate(_mono(test, "test"), rate_hz)
    max_lag_s = float(max_lag_s)
    if not (np.isfinite(max_lag_s) and 0.0 <= max_lag_s <= 10.0):
        raise ParameterError(f"max_lag_s must be in [0, 10] s, got {max_lag_s!r}")
    floor_db = float(floor_db)
    if not (np.isfinite(floor_db) and floor_db > 0.0):
        raise ParameterError(f"floor_db must be a positive number of dB, got {floor_db!r}")
    if ref.size < N_FFT:
        raise ParameterError(f"reference is shorter than one frame ({ref.size} samples at "
                             f"44.1 kHz < {N_FFT})")

    r = logmel_db(ref)                                        # (n_frames, 80)
    if float(r.max()) <= TINY_DB + 1e-3:
        raise ParameterError("reference is silent")
    floor, active, a = _reference_cells(r, floor_db)

    t, centre = _centred(float(r.max()), _test_db(logmel_db(tst)))   # (n_test_frames, 80)
    max_lag = int(np.floor(max_lag_s * ANALYSIS_RATE_HZ / HOP + 1e-9))
    n = r.shape[0]
    padded = np.full((max_lag + max(n, t.shape[0]) + max_lag, N_MELS), _SILENT, np.float32)
    padded[max_lag:max_lag + t.shape[0]] = t

    def cells(lag: int) -> _Cells:
        shifted = padded[max_lag + lag:max_lag + lag + n]     # test frame i+lag <-> reference frame i
        return _Cells(a, shifted[active].ravel(), floor)

    # quick pass: every lag at its median gain on a subsample of the cells;
    # then the full gain search on the best few lags
    lags = sorted(range(-max_lag, max_lag + 1), key=abs)
    quick = []
    for lag in lags:
        c = cells(lag).subsample(100_000)
        quick.append(float(c.distance(c.median_gain(n_iter=2))[0]))
    order = np.argsort(np.asarray(quick), kind="stable")[:3]
    best = None
    for i in sorted(order):                                   # smallest |lag| first on ties
        g, d = cells(lags[i]).best_gain()
        if best is None or d < best[2] - 1e-9:
            best = (lags[i], g, d)
    lag, g, d = best
    return Score(distance_db=float(d), lag_s=lag * HOP / ANALYSIS_RATE_HZ,
                 gain_db=float(g) + centre, n_frames=int(active.size))


# ---------------------------------------------------------------------------
# the optional figure

def spectrogram_figure(reference, test, *, rate_hz: int, path) -> None:
    """Save the two log-mel spectrograms side by side (same colour scale) to ``path``."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ParameterError("--plot needs matplotlib: pip install 'wav2vgm[plot]'") from None
    r, t = logmel_db(reference, rate_hz=rate_hz), logmel_db(test, rate_hz=rate_hz)
    top = float(max(r.max(initial=TINY_DB), t.max(initial=TINY_DB)))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, m, title in zip(axes, (r, t), ("reference", "test")):
        seconds = m.shape[0] * HOP / ANALYSIS_RATE_HZ
        im = ax.imshow(m.T, origin="lower", aspect="auto", vmin=top - 80, vmax=top,
                       extent=(0, seconds, 0, N_MELS), cmap="magma")
        ax.set_title(title)
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("mel band")
    fig.colorbar(im, ax=axes, label="dB")
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc}") from None
    finally:
        plt.close(fig)


def parabolic_peak(a, b, c):
    """Sub-bin offset (-0.5..0.5) and height of the parabola through three log-magnitude points.

    ``b`` is the peak bin's value and ``a``/``c`` its neighbours (arrays of
    any shape); the peak lies ``delta`` bins from the centre at ``height``.
    """
    den = a - 2 * b + c
    delta = np.where(np.abs(den) > 1e-9, 0.5 * (a - c) / np.where(den == 0, 1, den), 0.0)
    delta = np.clip(delta, -0.5, 0.5)
    return delta, b - 0.25 * (a - c) * delta
