"""The chip's ROM tables, computed from their closed forms (OPL3.md sections 5 and 9).

Both formulas reproduce Nuked-OPL3's ROM contents exactly.
"""

import numpy as np

LOGSIN = np.rint(-np.log2(np.sin((np.arange(256) + 0.5) * np.pi / 512)) * 256).astype(np.int32)
"""Quarter-wave log-sine, 256 entries, in units of 1/256 of a factor 2 (0.0235 dB)."""

EXP = np.rint(1024 * 2.0 ** ((255 - np.arange(256)) / 256)).astype(np.int32)
"""Exponential table, 256 entries, 2042 ... 1024."""

KSL_TOP = np.array([0, 32, 40, 45, 48, 51, 53, 55, 56, 58, 59, 60, 61, 62, 63, 64], dtype=np.int32)
"""Key-scale-level table indexed by the F-number's top four bits."""

KSL_SHIFT = np.array([8, 1, 2, 0], dtype=np.int32)
"""Right shift of the KSL term for KSL codes 0-3 (off, 3, 1.5, 6 dB/octave)."""

MULT_X2 = np.array([1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 20, 24, 24, 30, 30], dtype=np.int64)
"""Twice the frequency multiplier for MULT register values 0-15."""

EG_INCSTEP = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0]], dtype=np.int32)
"""Extra envelope step for fast rates, by rate_lo and the envelope timer's low bits."""

LIN_MAX_LEVEL = 0x1FFF


def exp_level(level):
    """Linear magnitude of an attenuation ``level`` (log units, clamped to 0x1FFF).

    ``(EXP[level & 255] * 2) >> (level >> 8)``: 4084 at level 0, 0 from 4096 up.
    """
    level = np.minimum(level, LIN_MAX_LEVEL)
    return (EXP[level & 0xFF] << 1) >> (level >> 8)


def _waveform_tables():
    """Per waveform and 10-bit phase: (attenuation level, negate flag).

    The operator output is ``exp_level(level + 8*env)``, one's-complemented
    (``~y``) where the flag is set.  "Silent" parts use level 0x1000.
    """
    p = np.arange(1024)
    quarter = np.where(p & 0x100, LOGSIN[(p & 0xFF) ^ 0xFF], LOGSIN[p & 0xFF])
    silent = np.full(1024, 0x1000)
    double = np.where(p & 0x80, LOGSIN[((p ^ 0xFF) << 1) & 0xFF], LOGSIN[(p << 1) & 0xFF])
    half = (p & 0x200) != 0
    level = np.empty((8, 1024), dtype=np.int32)
    neg = np.zeros((8, 1024), dtype=bool)
    level[0], neg[0] = quarter, half                                      # sine
    level[1] = np.where(half, silent, quarter)                             # half-sine
    level[2] = quarter                                                     # abs-sine
    level[3] = np.where(p & 0x100, silent, LOGSIN[p & 0xFF])               # quarter pulses
    level[4], neg[4] = np.where(half, silent, double), (p & 0x300) == 0x100  # alternating
    level[5] = np.where(half, silent, double)                              # camel
    level[6], neg[6] = 0, half                                             # square
    saw_phase = np.where(half, (p & 0x1FF) ^ 0x1FF, p)
    level[7], neg[7] = saw_phase << 3, half                                # log-saw
    return level, neg


WAVE_LEVEL, WAVE_NEG = _waveform_tables()
"""(8, 1024) attenuation levels and negate flags of the eight waveforms."""
