"""Many independent OPL3 voices rendered at once, vectorised over the batch.

Training data and the converter's timbre templates need the steady-state
sound of thousands of voice settings.  Running a whole :class:`Chip` per
voice would waste 34 of its 36 operators, so this module drives the same
operator blocks (:func:`~wav2vgm.opl3.emulator.operator_output`,
:func:`~wav2vgm.opl3.emulator.feedback_operator`,
:func:`~wav2vgm.opl3.emulator.phase_increment`) directly: every voice is
keyed on at sample 0 with AR=15, DR=0, EGT=1, so its envelope sits at zero
attenuation and the level is set by TL (and KSL) alone -- the settings the
converter writes.  The output equals the chip's channel output sample for
sample (tested against :class:`Chip`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError
from .emulator import feedback_operator, operator_output, phase_increment
from .registers import ksl_attenuation, ksl_term

# Modulation source of each operator (-1: feedback/none for op 0; else the
# operator index whose same-sample output modulates it) and the operators
# that sound, for 2-op (cnt 0/1) and 4-op (alg 0-3) voices.
ROUTING = {
    (2, 0): ((-1, 0), (1,)),
    (2, 1): ((-1, -1), (0, 1)),
    (4, 0): ((-1, 0, 1, 2), (3,)),
    (4, 1): ((-1, 0, -1, 2), (1, 3)),
    (4, 2): ((-1, -1, 1, 2), (0, 3)),
    (4, 3): ((-1, -1, 1, -1), (0, 2, 3)),
}


@dataclass
class VoiceBatch:
    """Settings of ``n_voices`` voices with ``n_ops`` (2 or 4) operators each.

    Per voice: ``fnum`` (0-1023), ``block`` (0-7), ``fb`` (0-7), ``alg``
    (2-op: the connection bit; 4-op: algorithm 0-3).  Per operator
    (shape ``(n_voices, n_ops)``): ``mult`` (register value 0-15), ``tl``
    (0-63), ``ws`` (0-7), ``ksl`` (0-3).
    """

    fnum: np.ndarray
    block: np.ndarray
    fb: np.ndarray
    alg: np.ndarray
    mult: np.ndarray
    tl: np.ndarray
    ws: np.ndarray
    ksl: np.ndarray | None = None

    @property
    def n_voices(self) -> int:
        return int(np.asarray(self.fnum).shape[0])

    @property
    def n_ops(self) -> int:
        return int(np.asarray(self.mult).shape[1])


def render_voices(batch: VoiceBatch, *, n_samples: int) -> np.ndarray:
    """Channel output of each voice for ``n_samples`` native samples after key-on.

    Returns (n_voices, n_samples) int32 (the int16-wrapped channel sum the
    chip's mixer receives).
    """
    n_ops = batch.n_ops
    if n_ops not in (2, 4):
        raise ParameterError(f"voices have 2 or 4 operators, got {n_ops}")
    B = batch.n_voices
    fnum = np.asarray(batch.fnum, np.int64)
    block = np.asarray(batch.block, np.int64)
    fb = np.asarray(batch.fb, np.int64)
    alg = np.asarray(batch.alg, np.int64)
    mult = np.asarray(batch.mult, np.int64)
    ws = np.asarray(batch.ws, np.int64)
    ksl = np.zeros_like(mult) if batch.ksl is None else np.asarray(batch.ksl, np.int64)
    ksl_raw = ksl_term(fnum, block)
    eg_out = np.minimum((np.asarray(batch.tl, np.int64) << 2)
                        + ksl_attenuation(ksl_raw[:, None], ksl), 0x1FF)   # (B, n_ops)
    t = np.arange(n_samples, dtype=np.uint32)
    # accumulator modulo 2**32 (a multiple of the chip's 2**19): exact and fast
    inc = phase_increment(fnum[:, None], block[:, None], mult).astype(np.uint32)  # (B, n_ops)
    out = np.zeros((B, n_samples), np.int32)
    for a in np.unique(alg).tolist():
        if (n_ops, a) not in ROUTING:
            raise ParameterError(f"no {n_ops}-op algorithm {a}")
        mods, sounding = ROUTING[(n_ops, a)]
        sel = np.flatnonzero(alg == a)
        ops = []
        for j in range(n_ops):
            phase = (((t[None, :] * inc[sel, j][:, None]) >> 9) & 0x3FF).astype(np.int32)
            if j == 0:
                y = np.empty((sel.size, n_samples), np.int32)
                has_fb = fb[sel] > 0
                if has_fb.any():
                    f = np.flatnonzero(has_fb)
                    hist = np.zeros((f.size, 2), np.int32)
                    y[f] = feedback_operator(phase[f], ws[sel[f], 0], eg_out[sel[f], 0][:, None],
                                             fb[sel[f]], hist)
                nf = np.flatnonzero(~has_fb)
                if nf.size:
                    y[nf] = operator_output(phase[nf], ws[sel[nf], 0][:, None],
                                            eg_out[sel[nf], 0][:, None])
            else:
                src = mods[j]
                if src >= 0:
                    phase = phase + ops[src]
                y = operator_output(phase, ws[sel, j][:, None], eg_out[sel, j][:, None])
            ops.append(y)
        acc = sum(ops[j] for j in sounding)
        out[sel] = ((acc + 0x8000) & 0xFFFF) - 0x8000
    return out
