"""The inverse model's input: a frame's spectrum on a log-frequency axis.

Derived from the magnitude spectra of :mod:`wav2vgm.spectrum` (the one
spectrum implementation); shared by the runtime and the training data so
both see exactly the same numbers.
"""

from __future__ import annotations

import numpy as np

from .. import spectrum

ANALYSIS_RATE_HZ = 44100
N_FFT = 4096
WINDOW = 2048
BINS_PER_OCTAVE = 12
F_MIN_HZ = 27.5
N_BINS = 112                     # 27.5 Hz .. 16.7 kHz
FLOOR_DB = -80.0                 # features are clipped this far below the frame's peak


F_MAX_HZ = F_MIN_HZ * 2.0 ** ((N_BINS - 1) / BINS_PER_OCTAVE)


def analysis_window(n: int = WINDOW) -> np.ndarray:
    """The Hann window every analysis frame is cut with (the model was trained with it)."""
    return np.hanning(n + 2)[1:-1].astype(np.float32)


def analysis_spectra(frames: np.ndarray, *, window: np.ndarray | None = None,
                     n_fft: int = N_FFT, overwrite: bool = False) -> np.ndarray:
    """(n_frames, n_fft//2+1) linear magnitude spectra of analysis ``frames``
    (n_frames, frame_length), each frame's DC removed first.

    ``window``: default :func:`analysis_window` of the frames' length.  The
    window-weighted mean of each frame is subtracted before windowing
    (``spectrum.magnitude_spectra(..., remove_dc=True)``).  An offset is
    inaudible and the yardstick's bands start at 30 Hz, but its main lobe
    makes it a frame's loudest bin and its side lobes (the first at 2.5
    window bins, 54 Hz, 31 dB down) pass as partials.  Recordings of OPL
    chips carry large offsets: several of its waveforms (half, absolute and
    pulse sines) are one-sided.  ``overwrite``: a float32 ``frames`` may be
    changed in place (:func:`~wav2vgm.spectrum.magnitude_spectra`).
    """
    w = analysis_window(np.shape(frames)[1]) if window is None else window
    return spectrum.magnitude_spectra(frames, window=w, n_fft=n_fft, remove_dc=True,
                                      overwrite=overwrite)


def hz_to_bin(f_hz) -> np.ndarray:
    """Fractional log-bin index of a frequency."""
    return BINS_PER_OCTAVE * np.log2(np.maximum(np.asarray(f_hz, float), 1e-3) / F_MIN_HZ)


def log_matrix() -> np.ndarray:
    """(N_FFT//2+1, N_BINS) weights summing FFT-bin power into the semitone bins."""
    return spectrum.log_frequency_matrix(rate_hz=ANALYSIS_RATE_HZ, n_fft=N_FFT, n_bins=N_BINS,
                                         f_min_hz=F_MIN_HZ, f_max_hz=F_MAX_HZ)


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
