"""Analysis by synthesis: choose voices one at a time against the residual spectrum.

Candidates come from the inverse model (timbre + pitch) and from the
spectral peaks (sines).  Each candidate's log-frequency power spectrum is
looked up from atoms precomputed with the emulator's timbre templates and
the converter's own spectrum code.  Greedily, per frame, the candidate
that explains the most remaining power without putting energy where there
is none (its level is the largest that stays under the residual in the
bins it occupies) is taken and its spectrum subtracted, up to the channel
budget.  Vectorised over frames.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .. import spectrum
from . import codebook, features

STEPS_PER_SEMITONE = 8
F_LO_HZ = 16.0
F_HI_HZ = 22050.0
_N_GRID = int(np.ceil(12 * STEPS_PER_SEMITONE * np.log2(F_HI_HZ / F_LO_HZ))) + 1


def _grid_index(f_hz):
    g = np.rint(12 * STEPS_PER_SEMITONE * np.log2(np.maximum(f_hz, F_LO_HZ) / F_LO_HZ))
    return np.clip(g, 0, _N_GRID - 1).astype(np.int64)


@lru_cache(maxsize=1)
def sine_response() -> np.ndarray:
    """(n_grid, N_BINS) log-bin power of a unit-amplitude sine at each grid frequency."""
    f = F_LO_HZ * 2.0 ** (np.arange(_N_GRID) / (12 * STEPS_PER_SEMITONE))
    t = np.arange(features.WINDOW) / features.ANALYSIS_RATE_HZ
    window = features.analysis_window()
    out = np.empty((_N_GRID, features.N_BINS), np.float32)
    for lo in range(0, _N_GRID, 256):
        fr = f[lo:lo + 256, None]
        frames = np.sin(2 * np.pi * fr * t[None, :]).astype(np.float32)
        mag = spectrum.magnitude_spectra(frames, window=window, n_fft=features.N_FFT)
        out[lo:lo + 256] = (mag * mag) @ features.log_matrix()
    return out


@lru_cache(maxsize=1)
def atoms() -> np.ndarray:
    """(N_TIMBRES, n_grid, N_BINS) log-bin power of each timbre (unit carrier) at each base pitch."""
    resp = sine_response()
    t2 = codebook.harmonic_templates() ** 2                          # (K, H)
    mult = (np.arange(t2.shape[1]) + 1) / 2.0
    base = F_LO_HZ * 2.0 ** (np.arange(_N_GRID) / (12 * STEPS_PER_SEMITONE))
    out = np.zeros((codebook.N_TIMBRES, _N_GRID, features.N_BINS), np.float32)
    for h in range(t2.shape[1]):
        w = t2[:, h]
        if w.max() < 1e-6:
            continue
        f = base * mult[h]
        ok = f < F_HI_HZ
        g = _grid_index(f[ok])
        out[:, ok, :] += w[:, None, None] * resp[g][None, :, :]
    return out


def pursue(power: np.ndarray, cls: np.ndarray, f0_hz: np.ndarray, *, n_voices: int,
           support: float = 0.1, main_hz: np.ndarray | None = None):
    """Pick up to ``n_voices`` candidates per frame and their amplitudes.

    ``power``: (n, N_BINS) observed log-bin power; ``cls``/``f0_hz``: (n, C)
    candidates (f0 <= 0 marks an empty slot); ``main_hz`` the frequency of each
    candidate's loudest partial: once a voice is taken, candidates whose
    loudest partial lies within 1% of its own are dropped (no doubled voices).
    Returns (chosen (n, C) bool, amplitude (n, C)).
    """
    n, c = cls.shape
    a = atoms()[cls, _grid_index(np.where(f0_hz > 0, f0_hz, F_LO_HZ))]      # (n, C, B)
    a = np.where((f0_hz > 0)[..., None], a, 0.0).astype(np.float32)
    peak = a.max(axis=2, keepdims=True)
    occupied = a >= support * np.maximum(peak, 1e-20)
    residual = power.astype(np.float32).copy()
    chosen = np.zeros((n, c), bool)
    gain = np.zeros((n, c), np.float32)
    rows = np.arange(n)
    safe = np.where(occupied, a, 1.0)
    blocked = np.zeros((n, c), bool)
    main = f0_hz if main_hz is None else main_hz
    for _ in range(min(n_voices, c)):
        ratio = np.where(occupied, residual[:, None, :] / safe, np.inf).min(axis=2)   # (n, C)
        ratio = np.where(chosen | blocked | (peak[..., 0] <= 0), 0.0, np.maximum(ratio, 0.0))
        explained = np.minimum(ratio[..., None] * a, residual[:, None, :]).sum(axis=2)
        best = np.argmax(explained, axis=1)
        ok = explained[rows, best] > 1e-12
        if not ok.any():
            break
        g = np.where(ok, ratio[rows, best], 0.0)
        chosen[rows[ok], best[ok]] = True
        near = np.abs(main / np.maximum(main[rows, best][:, None], 1e-6) - 1) < 0.01
        blocked |= near & ok[:, None]
        gain[rows, best] += g
        residual = np.maximum(residual - g[:, None] * a[rows, best], 0.0)
    return chosen, np.sqrt(gain)
