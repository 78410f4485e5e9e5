"""The inverse model's input: a frame's spectrum on a log-frequency axis.

Derived from the magnitude spectra of :mod:`wav2vgm.spectrum` (the one
spectrum implementation); shared by the runtime and the training data so
both see exactly the same numbers.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

ANALYSIS_RATE_HZ = 44100
N_FFT = 4096
WINDOW = 2048
BINS_PER_OCTAVE = 12
F_MIN_HZ = 27.5
N_BINS = 112                     # 27.5 Hz .. 16.7 kHz
FLOOR_DB = -80.0                 # features are clipped this far below the frame's peak


def bin_frequencies_hz() -> np.ndarray:
    """Centre frequency of each log bin (semitone steps from A0)."""
    return F_MIN_HZ * 2.0 ** (np.arange(N_BINS) / BINS_PER_OCTAVE)


def hz_to_bin(f_hz) -> np.ndarray:
    """Fractional log-bin index of a frequency."""
    return BINS_PER_OCTAVE * np.log2(np.maximum(np.asarray(f_hz, float), 1e-3) / F_MIN_HZ)


@lru_cache(maxsize=1)
def log_matrix() -> np.ndarray:
    """(N_FFT//2+1, N_BINS) weights summing FFT-bin power into log bins.

    Triangles one semitone wide on each side in log frequency; below about
    200 Hz, where a semitone is narrower than an FFT bin, each log bin takes
    the interpolated power at its centre instead, so no log bin is empty.
    """
    f = np.fft.rfftfreq(N_FFT, 1.0 / ANALYSIS_RATE_HZ)
    pos = hz_to_bin(np.maximum(f, 1e-3))
    centres = np.arange(N_BINS)
    tri = np.maximum(0.0, 1.0 - np.abs(pos[:, None] - centres[None, :]))
    tri[0] = 0.0
    # interpolation weights at each centre frequency (linear in FFT bins)
    fc = bin_frequencies_hz()
    x = fc / (ANALYSIS_RATE_HZ / N_FFT)
    lo = np.floor(x).astype(int)
    frac = x - lo
    interp = np.zeros_like(tri)
    interp[lo, centres] = 1 - frac
    interp[lo + 1, centres] += frac
    narrow = tri.sum(axis=0) < 1.0
    m = np.where(narrow[None, :], interp, tri)
    return m.astype(np.float32)


def model_features(mag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n_frames, N_BINS) features in [-1, 0] and each frame's peak level in dB.

    ``mag``: (n_frames, N_FFT//2+1) linear amplitudes (full-scale sine = 1).
    Features are the log-bin power in dB relative to the frame's loudest
    FFT bin, divided by -FLOOR_DB and clipped at -1.
    """
    mag = np.asarray(mag, np.float32)
    peak_db = 20 * np.log10(np.maximum(mag.max(axis=1), 1e-9))
    power = (mag * mag) @ log_matrix()
    db = 10 * np.log10(np.maximum(power, 1e-12)) - peak_db[:, None]
    x = np.clip(db / -FLOOR_DB, -1.0, 0.5).astype(np.float32)
    return x, peak_db.astype(np.float32)
