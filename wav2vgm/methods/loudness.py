"""The one global gain (input units -> int16 units), chosen by rule and checked by sound.

An operator spans 47 dB (TL 0-63), and key scaling takes it 0-42 dB further
down depending on its pitch (:func:`~.base.level_fields`).  The rule in
:func:`loudness_gain` lets the loudest operators clip at TL 0 rather than
lose quiet partials below that, which is the better trade on most inputs --
but not on a loud note that decays over a wider range than that (a struck
or plucked single tone): there the clipping flattens the note's first
second.
:func:`predicted_errors` tells the cases apart: on
a subsample of frames it builds the mel spectrum the voices will play at
each candidate gain -- each operator's spectrum from the emulator-rendered
atoms (:mod:`.pursuit`), scaled by the level its TL and key scaling
really give, clipped at TL 0 and silent below their reach -- and measures
its distance to the input's mel spectrum with the yardstick itself
(:func:`~wav2vgm.spectrum.aligned_distance`: floor, counted cells and
best global gain as in ``wav2vgm score``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .. import spectrum
from ..opl3 import registers as R
from . import codebook
from .base import FILL_IN_MAX, FULL_SCALE, VoiceFrames, fill_in_eligible, level_fields

HEADROOM = 30000.0          # int16 units the loudest frame's requested operator sum may reach
OVERDRIVE_DB = 6.0          # how far above TL 0 the loudest operator may be asked to play
PLAYED_HEADROOM = 45000.0   # int16 units the loudest frame's played operator sum may reach then
# the check tries the rule's gain less these and takes the one predicted closest (it once
# required 0.5 dB, which left the tonal clips' loudest partials clipped at TL 0 where 3 dB
# less gain sounds closer: adplay, 23 clips, `model` 2.743 -> 2.730 dB, `sines` 3.567 ->
# 3.555; flute 2.38 -> 2.27, trumpet and melody -0.07, wormintr -0.05, opl_random_11
# +0.02, the other 18 unchanged)
LOWER_STEPS_DB = (0.0, 3.0, 6.0, 9.0, 12.0)
# frames the check judges (a stride over longer inputs).  512 and 256 chose the same gain
# for `model` on all 23 benchmark clips (adplay scores and the 39 hashed conversions
# unchanged), for `sines` on 22 (opl_song_galway 6.097 -> 6.080 dB); 256 takes the 60 s
# speed clip's conversion about 3% less time (median ratio 0.970 over 6 interleaved pairs
# of warm runs, 2026-12-04)
MAX_FRAMES = 256
# the yardstick's gain search starts on a grid this wide around the loudest cells met (its
# default, 40 dB, is for any test): the gains it settles on for the 23 benchmark clips'
# checks lie between -11.7 and +0.3 dB, and the 39 hashed conversions are the same at
# either width (the 60 s speed clip's check 17 -> 14 ms on 256 frames, 33 -> 26 on 512)
SEARCH_SPAN_DB = 16.0


def loudness_gain(voices: VoiceFrames, *, gain_db: float = 0.0,
                  reference: tuple[np.ndarray, int] | None = None) -> float:
    """Input units -> int16 units: the one global gain before levels are quantised.

    An operator spans 47 dB (TL 0-63), more with key scaling at higher
    pitches; inputs span more, so the gain trades clipping the loudest
    partials at TL 0 against losing the quietest.  The gain is at least the
    one at which the loudest frame's operator sum fits ``HEADROOM`` (16-bit range, phases aligned).  Where
    that leaves the loudest operator less than ``OVERDRIVE_DB`` above TL 0
    (sparse inputs: a few loud voices), the gain rises towards that, as far
    as the loudest frame's sum *as played* (each operator at most TL 0)
    stays within ``PLAYED_HEADROOM`` -- aligned peaks of many partials are
    rare: no benchmark clip's render clips.  Measured on the benchmark clips
    (``python benchmarks/run.py quality``): clipping the loudest operator by
    a few dB costs less than the quiet partials a lower gain loses.

    Except where a lower gain is predicted to sound closer (one loud note
    decaying over more than 47 dB; clean tones whose loudest partials the
    rule clips): with ``reference`` = (input mel power of every
    ``stride``-th frame, stride), up to 12 dB less gain is tried and the
    gain :func:`predicted_errors` finds closest is taken.  ``gain_db`` is
    added last.
    """
    def chunks():                           # the voice table a few thousand frames at a time
        for lo in range(0, voices.n_frames, 16384):
            yield voices.rows(slice(lo, lo + 16384))

    peak, top = 0.0, 0.0
    for a in (part.sounding_amplitudes() for part in chunks()):       # (frames, operators)
        peak, top = max(peak, float(a.sum(axis=1).max())), max(top, float(a.max()))
    if peak <= 1e-9:
        return 10 ** (gain_db / 20)
    base = HEADROOM / peak
    target = 10 ** (OVERDRIVE_DB / 20) * FULL_SCALE / top
    if target > base:
        # only frames whose requested sum at the target passes the headroom can limit it
        loud, caps = [], []
        for part in chunks():               # the caps only where a frame may limit the gain
            a = part.sounding_amplitudes()
            over = a.sum(axis=1) * target > PLAYED_HEADROOM
            loud.append(a[over])
            caps.append(played_caps(part.rows(np.flatnonzero(over))))
        loud, caps = np.concatenate(loud), np.concatenate(caps)

        def fits(log_gain: float) -> bool:
            played = np.minimum(loud * np.exp(log_gain), caps).sum(axis=1)
            return float(played.max(initial=0.0)) <= PLAYED_HEADROOM

        lo, hi = np.log(base), np.log(target)
        if fits(hi):
            lo = hi
        while hi - lo > 1e-3:                               # the played sum grows with the gain
            mid = 0.5 * (lo + hi)
            if fits(mid):
                lo = mid
            else:
                hi = mid
        base = float(np.exp(lo))
    if reference is not None and reference[0].shape[0]:
        power, stride = reference
        judged = voices.rows(slice(None, power.shape[0] * stride, stride))
        gains = base * 10 ** (-np.asarray(LOWER_STEPS_DB) / 20)
        errors = predicted_errors(judged, power[:judged.n_frames], gains)
        base = float(gains[int(np.argmin(errors))])
    return base * 10 ** (gain_db / 20)


def played_caps(voices: VoiceFrames) -> np.ndarray:
    """(n_frames, 2 * n_channels) the loudest each operator of
    :meth:`~.base.VoiceFrames.sounding_amplitudes` plays (int16 units): TL 0, or
    FILL_IN_MAX for an operator 2 whose operator 1 fills in (:func:`~.base.fill_in_eligible`)."""
    op2 = np.where(fill_in_eligible(voices), np.float32(FILL_IN_MAX), np.float32(FULL_SCALE))
    return np.concatenate([op2, np.full(op2.shape, np.float32(FULL_SCALE))], axis=1)


def stride_for(n_frames: int) -> int:
    """Every how many frames are judged (at most MAX_FRAMES in all)."""
    return max(1, -(-int(n_frames) // MAX_FRAMES))


@lru_cache(maxsize=1)
def _timbre_of_fields() -> dict:
    return {(t.cnt, t.fb, t.mult1, t.mult2, t.ws1, t.ws2, t.tl1): k
            for k, t in enumerate(codebook.TIMBRES)}


def operator_atoms(voices: VoiceFrames) -> tuple[np.ndarray, np.ndarray]:
    """(n, ch, N_MELS) each channel's operator 2 and operator 1 mel power at unit amplitude.

    FM channels (``cnt == 0``) sound through the carrier: its atom is the
    codebook timbre's (sine if the fields match none), operator 1's is zero.
    Additive channels play waveforms on both operators.
    """
    from .pursuit import atoms_at
    return tuple(atoms_at(rows) for rows in operator_atom_rows(voices))


def operator_atom_rows(voices: VoiceFrames) -> tuple[np.ndarray, np.ndarray]:
    """(n, ch) the atom-table rows (:func:`~.pursuit.atom_rows`) of :func:`operator_atoms`."""
    from .pursuit import atom_rows
    mult = np.asarray(R.MULT_FACTORS)
    base_hz = (voices.fnum.astype(np.float64) * R.NATIVE_RATE_HZ
               / 2.0 ** (20 - voices.block.astype(np.float64)))
    fm = voices.cnt == 0
    fm_cls = np.zeros(voices.fnum.shape, np.int64)
    if fm.any():
        keys = np.stack([voices.cnt, voices.fb, voices.mult1, voices.mult2, voices.ws1,
                         voices.ws2, voices.mod_tl1], axis=-1).astype(np.int64)[fm]
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        known = _timbre_of_fields()
        fm_cls[fm] = np.array([known.get(tuple(u), 0) for u in uniq.tolist()])[inv.ravel()]
    cls2 = np.where(fm, fm_cls, voices.ws2.astype(np.int64))
    f2_hz = np.where(fm, base_hz, base_hz * mult[voices.mult2])
    cls1 = voices.ws1.astype(np.int64)
    f1_hz = base_hz * mult[voices.mult1]
    return (atom_rows(cls2, np.where(voices.amp2 > 0, f2_hz, 0.0)),
            atom_rows(cls1, np.where(~fm & (voices.amp1 > 0), f1_hz, 0.0)))


def voice_power(voices: VoiceFrames, units: tuple[np.ndarray, np.ndarray] | None = None
                ) -> np.ndarray:
    """(n_frames, N_MELS) mel power the voices make, from the atoms (static, per frame).

    ``units``: their :func:`operator_atoms`, if already looked up.
    """
    unit2, unit1 = operator_atoms(voices) if units is None else units
    a1 = np.where(voices.cnt == 0, 0.0, voices.amp1).astype(np.float32)
    p = np.einsum("nc,ncb->nb", voices.amp2.astype(np.float32) ** 2, unit2)
    p += np.einsum("nc,ncb->nb", a1 ** 2, unit1)
    return p


def played_amplitude(amp: np.ndarray, gains: np.ndarray, ksl_term_eg) -> np.ndarray:
    """(..., G) the amplitude (input units) operators asked for ``amp`` play at, per gain.

    Quantised as :func:`~.base.quantise` does (:func:`~.base.level_fields`):
    TL steps and key-scaling shares, at most TL 0 (``ksl_term_eg``, shaped
    like ``amp``: :func:`~wav2vgm.opl3.registers.ksl_term` of each operator's
    channel), silent where even full key scaling leaves it under TL 63.
    """
    a = np.asarray(amp, np.float64)[..., None] * gains
    term = np.broadcast_to(np.asarray(ksl_term_eg, np.int64)[..., None], a.shape)
    tl, code, on = level_fields(a, term)
    att_db = (tl + R.ksl_attenuation(term, code) / 4.0) * R.TL_STEP_DB
    return np.where(on, FULL_SCALE * 10 ** (-att_db / 20) / gains, 0.0)


def predicted_errors(voices: VoiceFrames, power: np.ndarray, gains) -> np.ndarray:
    """(G,) the yardstick's distance (dB) of ``voices`` played at each of ``gains``.

    ``voices``: the frames judged (m, ch); ``power``: their input mel power
    (m, N_MELS).  Static spectra, no phases: a guide to the level trade,
    not a prediction of the score.
    """
    gains = np.asarray(gains, np.float64)
    unit2, unit1 = operator_atoms(voices)
    term = R.ksl_term(voices.fnum, voices.block)
    # an operator 2 whose operator 1 fills in plays its level (up to FILL_IN_MAX), not TL
    # steps, where it sounds at all
    stepped = played_amplitude(voices.amp2, gains, term)
    fill = fill_in_eligible(voices)[..., None] & (stepped > 0)
    w2 = np.where(fill, np.minimum(voices.amp2[..., None] * gains, FILL_IN_MAX) / gains,
                  stepped) ** 2                                              # (m, ch, G)
    w1 = np.where((voices.cnt == 0)[..., None], 0.0,
                  played_amplitude(voices.amp1, gains, term) ** 2)
    model = (np.matmul(unit2.transpose(0, 2, 1), w2.astype(np.float32))
             + np.matmul(unit1.transpose(0, 2, 1), w1.astype(np.float32)))     # (m, B, G)
    ref_db = spectrum.db(power)
    if ref_db.size == 0 or float(ref_db.max()) <= spectrum.TINY_DB + 1e-3:
        return np.zeros(gains.size)                       # silent input: no gain is closer
    return np.array([spectrum.aligned_distance(ref_db, spectrum.db(model[..., g]),
                                               span_db=SEARCH_SPAN_DB)
                     for g in range(gains.size)])
