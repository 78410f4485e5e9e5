"""What every method produces: per-frame channel settings before the level is fixed.

A method turns magnitude spectra into :class:`VoiceFrames` -- for each frame
and each of the 18 channels, the register fields that do not depend on
loudness (F-number, block, multipliers, waveforms, feedback, connection) and
the linear amplitudes its operators should sound at, in input units (a
full-scale sine has amplitude 1.0).  :func:`quantise` then applies the one
global gain and turns amplitudes into TL values and key bits, holding the
pitch of a channel that stops so its release never glides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..opl3 import registers as R


@dataclass
class VoiceFrames:
    """Per-frame, per-channel voice settings, arrays of shape (n_frames, n_channels).

    ``amp1``/``amp2``: linear amplitude of operator 1/2 in input units (0 =
    silent).  ``mod_tl1``: for FM channels (``cnt == 0``) operator 1 is a
    modulator whose TL sets the timbre, not the loudness; it is given
    directly and ``amp1`` is ignored.
    """

    fnum: np.ndarray
    block: np.ndarray
    mult1: np.ndarray
    mult2: np.ndarray
    ws1: np.ndarray
    ws2: np.ndarray
    fb: np.ndarray
    cnt: np.ndarray
    amp1: np.ndarray
    amp2: np.ndarray
    mod_tl1: np.ndarray
    outputs: np.ndarray | None = None

    @classmethod
    def empty(cls, n_frames: int, n_channels: int) -> "VoiceFrames":
        # compact types: the table holds every frame of the input (a few bytes per channel)
        shape = (n_frames, n_channels)
        zb = lambda v=0: np.full(shape, v, np.uint8)  # noqa: E731
        zf = lambda: np.zeros(shape, np.float32)  # noqa: E731
        return cls(fnum=np.zeros(shape, np.int16), block=zb(), mult1=zb(1), mult2=zb(1),
                   ws1=zb(), ws2=zb(), fb=zb(), cnt=zb(1), amp1=zf(), amp2=zf(), mod_tl1=zb(63))

    @property
    def n_frames(self) -> int:
        return int(self.fnum.shape[0])

    @staticmethod
    def concatenate(parts: list["VoiceFrames"]) -> "VoiceFrames":
        names = [f for f in VoiceFrames.__dataclass_fields__ if f != "outputs"]
        out = VoiceFrames(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in names})
        if all(p.outputs is not None for p in parts) and parts:
            out.outputs = np.concatenate([p.outputs for p in parts])
        return out

    def rows(self, index) -> "VoiceFrames":
        """The frames ``index`` picks (a slice: views; an index array: copies)."""
        names = [f for f in VoiceFrames.__dataclass_fields__ if f != "outputs"]
        if isinstance(index, np.ndarray) and index.dtype.kind in "iu":
            pick = lambda a: a.take(index, axis=0)  # noqa: E731  (faster than a[index])
        else:
            pick = lambda a: a[index]  # noqa: E731
        return VoiceFrames(**{n: pick(getattr(self, n)) for n in names},
                           outputs=None if self.outputs is None else pick(self.outputs))

    @staticmethod
    def stack_channels(parts: list["VoiceFrames"]) -> "VoiceFrames":
        """Groups of channels over the same frames -> one table (channels side by side)."""
        names = [f for f in VoiceFrames.__dataclass_fields__ if f != "outputs"]
        return VoiceFrames(**{n: np.concatenate([getattr(p, n) for p in parts], axis=1) for n in names})

    def sounding_amplitudes(self) -> np.ndarray:
        """(n_frames, 2 * n_channels) the amplitude of every operator heard (input units).

        Operator 1 of an FM channel is a modulator: it is not heard, 0.
        """
        return np.concatenate([self.amp2, np.where(self.cnt == 1, self.amp1, 0.0)], axis=1)

    def sounding_hz(self) -> np.ndarray:
        """(n_frames, 2 * n_channels) the pitch of the same operators as
        :meth:`sounding_amplitudes`, whether they sound or not (0 for an FM modulator)."""
        return np.concatenate([R.fnum_to_hz(self.fnum, self.block, self.mult2),
                               np.where(self.cnt == 1, R.fnum_to_hz(self.fnum, self.block,
                                                                    self.mult1), 0.0)], axis=1)


_WAVE_FIELDS = ("cnt", "fb", "ws1", "ws2", "mod_tl1")      # a channel's timbre, but for ...
_MULT_FIELDS = ("mult1", "mult2")                          # ... its operators' multipliers
_GLIDE_CENTS = 100.0        # a held note whose pitch moves less than this glides between frames
# ... and so does one whose pitch moves further, up to GLIDE_MAX_CENTS a frame, where the
# steps before and after it go the same way (:func:`glide_neighbours`): a glide the sine
# tracker followed (:func:`~.sines._glides`), its pitch interpolated between the frames
# instead of jumping at each.  `python benchmarks/run.py glides --player adplay`, `model`
# / `sines`: sweeps 3 kHz -> 100 Hz 7.52 -> 6.11 / 7.92 -> 5.57 dB, a +-200 Hz vibrato
# 6.13 -> 4.09 / 6.40 -> 2.11, 8 notes joined by 40 ms glides 4.13 -> 4.19 / 3.26 ->
# 3.23, and the kick of `run.py tones` 3.36 -> 3.18 / 4.17 -> 3.97 (its falls are
# glides too); the 23 clips 2.0644 -> 2.0643 (the 15 tuned on 2.0743 -> 2.0733, held out 2.0459
# -> 2.0475: flute 1.801 -> 1.814), `sines` 3.149 either way, `best` 2.055, `fast`
# 2.128.  Where the step before or the one after agrees (not both): 2.0663
# (opl_random_11 +0.012, speech_b +0.013); with levels gliding through such steps too,
# not passing them as jumps (:data:`jump_share`): the same within 0.001
GLIDE_MIN_CENTS = 50.0
GLIDE_STEP_RATIO = 2.5
GLIDE_MAX_CENTS = 700.0
_MULT_FACTORS = np.asarray(R.MULT_FACTORS)                  # by MULT register value
# a note that ends fades this much (dB) over the half hop before its key goes off, evenly
# in dB: its release then starts that much lower.  adplay, 23 clips, `model`: 0 / 4 / 6 /
# 9 dB 2.076 / 2.072 / 2.071 / 2.072 (the 15 tuned on 2.085 / 2.082 / 2.082 / 2.083;
# held out 2.059 -> 2.051 at 6), `sines` 3.158 -> 3.157 at 6.  The same fade before a
# key-on (the note starting 6 dB down, ramping up to its level) scored worse; a release
# rate of 12 or 13 instead of the fade, 2.074 (held out 2.057 / 2.058)
END_FADE_DB = 6.0
_END_FADE_LN = np.float32(END_FADE_DB * np.log(10) / 20)


def glide_neighbours(step_cents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(before, after), bool arrays shaped like ``step_cents`` (n_steps, ...): the pitch
    steps (cents, signed) from each frame to the next, where the step before / after goes
    the same way, by at least GLIDE_MIN_CENTS and at most GLIDE_STEP_RATIO times (or 100
    cents more than) this one -- as a glide moves, not as a note that changes once or a
    vowel's loudest harmonic that hops to the next by the harmonics' spacing."""
    step = np.asarray(step_cents, np.float64)
    size = np.abs(step)
    limit = np.maximum(size + 100.0, GLIDE_STEP_RATIO * size)
    with np.errstate(invalid="ignore"):
        moving = size >= GLIDE_MIN_CENTS                             # (NaN: no pitch)
    way = np.sign(step)
    before, after = np.zeros(step.shape, bool), np.zeros(step.shape, bool)
    with np.errstate(invalid="ignore"):
        before[1:] = moving[:-1] & (way[:-1] == way[1:]) & (size[:-1] <= limit[1:])
        after[:-1] = moving[1:] & (way[1:] == way[:-1]) & (size[1:] <= limit[:-1])
    return before, after


def subdivide(voices: VoiceFrames, substeps: int, *, jump_share: float | None = None) -> VoiceFrames:
    """Each frame -> ``substeps`` register updates, levels and held notes interpolated between frames.

    A frame's settings stand for its centre; update ``j`` of frame ``i``
    covers the ``j``-th part of the hop that starts half a hop before the
    centre, and takes values interpolated at its middle towards the
    neighbouring frame: the level (in dB) of each operator sounding in both
    frames with the same waveforms, connection and feedback, whatever partial
    it plays there, and the pitch (in cents) where the channel holds one note
    (the same timbre, keyed, within 100 cents in both, or further in a glide:
    :func:`glide_neighbours` on both sides, up to GLIDE_MAX_CENTS).  Otherwise (a note
    starts, stops or changes its sound) it keeps the frame's own settings, so
    keys, timbres and pitch jumps change exactly where they did; a note that
    ends fades END_FADE_DB over the half hop before its key goes off.
    Returns ``n_frames * substeps`` rows.

    Levels glide even where the channel moves to another partial or partner
    under a held key (the sine tracker does so in about half of speech's held
    frame pairs): every TL change is an instant step in the waveform, heard
    as a click whose size grows with the step, so a jump of several TL steps
    at once costs more than the same change in single steps.  Measured with
    adplay on the 23 benchmark clips: `model` 3.12 -> 2.96 dB, `sines` 3.72
    -> 3.58 (levels gliding only within held notes, with levels smoothed
    over frames instead: 3.07 and 3.72).

    ``jump_share``: where an operator of a held channel jumps (its partial
    moves 100 cents or more: the tracker moved it to another), its level
    passes the jump nearer the quieter of the two frames' levels: at the
    quieter level plus this share of the way to their mean (dB), reached by
    an even ramp over each half hop.  None: through the mean, like every
    other level.  The mean plays the new partial too loud for half a hop
    where it is the quieter one (and the old one where that is).  A step at
    the jump instead (the quieter level at once) is much worse: that is
    several TL steps at once.
    """
    k = int(substeps)
    if k <= 1 or voices.n_frames == 0:
        return voices
    n = voices.n_frames
    u = np.tile((np.arange(k) + 0.5) / k - 0.5, n)            # offset of each update, in hops
    own = np.repeat(np.arange(n), k)
    other = np.clip(own + np.where(u < 0, -1, 1), 0, n - 1)
    w = np.abs(u)[:, None].astype(np.float32)                # weight of the neighbour
    # what holds between frames i and i + 1 is worked out once per pair (row i), then
    # looked up for the updates between them; the updates without a neighbour (own ==
    # other) read an added row where nothing holds
    pair = np.where(own == other, n - 1, np.minimum(own, other))
    nothing = np.zeros((1,) + voices.fnum.shape[1:], bool)
    keyed = (voices.amp2 > 0) | (voices.amp1 > 0)
    base = voices.fnum.astype(np.float64) * 2.0 ** voices.block.astype(np.float64)   # ~ pitch
    with np.errstate(divide="ignore", invalid="ignore"):
        step = 1200 * np.log2(base[1:] / base[:-1])                 # cents, signed
        before, after = glide_neighbours(step)
        cents = np.abs(step)
    level = np.ones(cents.shape, bool)
    for name in _WAVE_FIELDS:
        a = getattr(voices, name)
        level &= a[1:] == a[:-1]
    glide = level & keyed[1:] & keyed[:-1] & (
        (cents < _GLIDE_CENTS) | (before & after & (cents <= GLIDE_MAX_CENTS)))
    for name in _MULT_FIELDS:
        a = getattr(voices, name)
        glide &= a[1:] == a[:-1]
    glide = np.concatenate([glide, nothing])[pair]
    out = voices.rows(own)
    for name in ("amp1", "amp2"):
        a = getattr(voices, name)
        both = np.concatenate([level & (a[1:] > 0) & (a[:-1] > 0), nothing])[pair]
        log_a = np.log(np.maximum(a, 1e-12))                     # per frame, then per update
        log_own, log_other = log_a.take(own, axis=0), log_a.take(other, axis=0)
        v = (1 - w) * log_own + w * log_other
        if jump_share is not None:
            # the operator's own partial moves 100 cents or more: a jump (the operator
            # that keeps its partial when only the other one moves is no jump)
            mult = _MULT_FACTORS[getattr(voices, "mult2" if name == "amp2" else "mult1")]
            f_op = base * mult
            with np.errstate(divide="ignore", invalid="ignore"):
                held = np.abs(1200 * np.log2(f_op[1:] / f_op[:-1])) < _GLIDE_CENTS
            # (whole-table arithmetic: gathering the jumps' cells made subdivide 40 ms on
            # the 60 s clip instead of 28)
            jump = both & np.concatenate([~held, nothing])[pair]
            quiet = np.minimum(log_own, log_other)
            at_jump = quiet + np.float32(jump_share) * (np.float32(0.5) * (log_own + log_other) - quiet)
            v = np.where(jump, log_own + 2 * w * (at_jump - log_own), v)
        # a note about to end (its channel silent the next frame) fades over its last half hop
        ending = (np.concatenate([keyed[:-1] & ~keyed[1:], nothing])[pair]
                  & (own < other)[:, None] & (a.take(own, axis=0) > 0))
        v = np.where(ending, log_own - _END_FADE_LN * (2 * w), v)
        x = getattr(out, name)
        x[:] = np.where(both | ending, np.exp(v), x)
    # the pitch of the updates that glide (a fifth of them on the 60 s speed clip)
    f_hz = (voices.fnum.astype(np.float64) * R.NATIVE_RATE_HZ
            / 2.0 ** (20 - voices.block.astype(np.float64)))
    log_f = np.log(np.maximum(f_hz, 1e-6))
    r, c = np.nonzero(glide)
    f_mid = np.exp((1 - w[r, 0]) * log_f[own[r], c] + w[r, 0] * log_f[other[r], c])
    # the frame's own block where the F-number fits (a block change between the A0 and
    # B0 writes would be heard for a moment), else the best block
    fnum = np.rint(f_mid * 2.0 ** (20 - out.block[r, c].astype(np.int64)) / R.NATIVE_RATE_HZ)
    out.fnum[r, c] = fnum
    refit = ~((fnum >= 256) & (fnum <= 1023))               # the few that leave their block
    out.fnum[r[refit], c[refit]], out.block[r[refit], c[refit]] = R.hz_to_fnum(f_mid[refit], mult=1)
    return out


# before an onset: where the input around an update is more than ONSET_DROP_DB quieter
# than what the update plays, it plays that much quieter (at most ONSET_FLOOR_DB); for
# ONSET_ATTACK_S after such an update, where the input is louder than what the update
# plays (the frames' windows spread an attack over them), it plays that much louder (at
# most ONSET_BOOST_DB).  adplay, 23 clips: `model` 2.403 -> 2.397 dB with the drops
# alone (opl_song_doofus 3.06 -> 2.96, speech_b 3.90 -> 3.86, speech_es 3.60 -> 3.63),
# `sines` 3.484 -> 3.474 (doofus 5.10 -> 4.91); with the attacks 2.388 and 3.463 (doofus
# 2.96 -> 2.89, speech_es 3.63 -> 3.59, speech_a 3.70 -> 3.66; none 0.02 dB worse).  Drop
# thresholds of 4 / 9 dB or a 30 dB floor: within 0.005 dB on the 9 clips they change;
# attacks raised only 3 dB above what plays, about none of the gain; 9-18 updates
# (at 90 frames/s) and caps of 14-20 dB about the same.  Raising updates wherever the
# input is louder, not only after a drop: speech 0.1-0.2 dB worse.  Once levels passed
# jumps nearer the quieter level and notes faded before their key-off (jump_share,
# END_FADE_DB), the threshold was tried again: 3 / 4 / 4.5 / 5 / 6 / 9 dB, the 15 clips
# tuned on 2.078 / 2.078 / 2.077 / 2.080 / 2.082 / 2.084 dB (`model`); at 4.5 the 8 held
# out 2.051 -> 2.050, speech_b 2.96 -> 2.93, speech_gb 2.93 -> 2.91, doofus 2.75 ->
# 2.73, no clip 0.002 dB worse; `sines` 3.157 -> 3.154
ONSET_DROP_DB = 4.5
ONSET_FLOOR_DB = 15.0
ONSET_ATTACK_S = 0.02
ONSET_BOOST_DB = 14.0


def onset_gains(update_energy: np.ndarray, played: np.ndarray, *, loudest: float,
                attack_updates: int = 0) -> np.ndarray:
    """(n_frames, steps) a level factor for every register update: < 1 before onsets,
    > 1 at them.

    ``update_energy``: (n_frames, 1 + steps) the input's power as each frame
    sees it (column 0) and around the middle of each of its updates
    (:func:`~wav2vgm.convert.energy_weights`); ``played``: (n_frames, steps)
    the power the voices play at each update relative to their frame's own
    (what :func:`subdivide` interpolated); ``loudest``: the input's loudest
    frame power.  A frame's window reaches half a window ahead, so a note that
    starts there already sounds, faintly, in the frame's spectrum; played from
    the frame's first update it is heard before the input has it, and its
    attack, averaged over the window, comes late and soft.  Where the input's
    power around an update is more than ONSET_DROP_DB below what the update
    plays (the frame's power times ``played``), the update plays at the
    input's power (at most ONSET_FLOOR_DB down); in the ``attack_updates``
    updates after such a one, where the input is louder than what the update
    plays, it plays at the input's power too (at most ONSET_BOOST_DB up, and
    not above ``loudest``, to which the loudness gain fitted the chip).  1
    elsewhere, in silence (60 dB under ``loudest``) and where the power
    around an update is unknown (NaN).
    """
    e = np.asarray(update_energy, np.float64)
    frame = e[:, :1]
    expected = frame * np.asarray(played, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.sqrt(e[:, 1:] / expected)
        drop = ratio < 10 ** (-ONSET_DROP_DB / 20)
        rise = ratio > 1.0
    gain = np.where(drop, np.maximum(ratio, 10 ** (-ONSET_FLOOR_DB / 20)), 1.0)
    if attack_updates > 0:
        # the updates within attack_updates after a drop (in time order, across frames)
        count = np.concatenate([[0], np.cumsum(drop.ravel())])     # drops before each update
        i = np.arange(drop.size)
        since = count[i] > count[np.maximum(i - int(attack_updates), 0)]
        attack = since.reshape(drop.shape) & rise
        # never above the loudest frame's power, which the loudness gain fitted to the chip
        with np.errstate(invalid="ignore", divide="ignore"):
            room = np.sqrt(loudest / expected)
        up = np.minimum(np.minimum(ratio, 10 ** (ONSET_BOOST_DB / 20)), np.maximum(room, 1.0))
        gain = np.where(attack, up, gain)
    return np.where((frame >= loudest * 1e-6) & np.isfinite(ratio), gain, 1.0)


FULL_SCALE = float(R.FULL_SCALE_OPERATOR)


# how a note ends: release rate 11 fades 6 dB per 2.6 ms (about 40 ms to silence,
# ../shared/reference/OPL3.md), so a key-off does not click the way the fastest
# rate (15, 2.5 ms to silence) does; a channel that rests one frame before its next
# note is then about 40 dB down when that note keys on
RELEASE_RATE = 11


_EG_PER_DECADE = np.float32(80.0 / R.TL_STEP_DB)                # EG units per factor 10
_EG_FULL_SCALE = np.float32(80.0 * np.log10(FULL_SCALE) / R.TL_STEP_DB)


def _nearest_level(want: np.ndarray, term: np.ndarray, *, depths):
    """Per operator, of the key-scaling depths given (increasing), the one whose TL + share
    lands nearest ``want`` (EG units): (distance, inf where none fits under TL 63; TL;
    depth), the TL and depth of no use where none fits."""
    best = tl = depth = None
    for d in depths:                                          # least key scaling first
        # (the share on ``term`` as given, broadcast by the subtraction: the key-scale term of
        # a channel is the same for both its operators and for every gain tried)
        r = want - R.ksl_attenuation(term, R.KSL_CODES_BY_DEPTH[d]).astype(np.float32) if d else want
        t = np.rint(r * np.float32(0.25))
        np.clip(t, 0, 63, out=t)
        cost = np.abs(t * np.float32(4.0) - r)
        np.copyto(cost, np.float32(np.inf), where=r > np.float32(4 * 63.5))   # does not fit under TL 63
        if best is None:
            best, tl, depth = cost, t, np.zeros(want.shape, np.int8)
            continue
        # ties to the lesser depth; blended by arithmetic (where and masked copies of these
        # unpredictable masks take several times as long); a better depth is a deeper one
        better = cost < best
        np.minimum(best, cost, out=best)
        tl += better * (t - tl)
        np.maximum(depth, better * np.int8(d), out=depth)
    return best, tl, depth


def level_fields(amp_out: np.ndarray, ksl_term_eg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Operator amplitudes (int16 output units, 4084 = TL 0) -> (TL, KSL code, sounding).

    The chip attenuates an operator by ``4 * TL`` plus its KSL code's share of
    the key-scale term of the channel's pitch (``ksl_term_eg``:
    :func:`~wav2vgm.opl3.registers.ksl_term`, broadcast against ``amp_out``;
    none, a quarter, half or all of it), in EG units of 0.19 dB.  TL alone steps
    0.75 dB; the quarter and half shares are whole EG units that are not always
    multiples of 4, so with them the level lands between TL steps (for 55% of
    the F-number and block settings, 1 or 2 of the 3 levels between two steps;
    none at low pitches and where the term is a multiple of 16 units).  Of the
    four codes the one whose level is nearest the amplitude is taken (ties to
    less key scaling).  (Where a held note's pitch moves, the player applies the
    TL/KSL write a few samples before the F-number write, so those samples hear
    the old pitch's key scaling: keeping the codes whose share moved less than 1
    or 4 EG units scored the same, 2.406 / 2.407 dB against 2.403 over the 23
    clips.)

    TL spans 47 dB; the key scaling adds up to 20 dB at 440 Hz, 32 dB at
    2 kHz and 36-42 dB above 3 kHz (none at 50 Hz), so quiet operators take
    the code that brings them within TL 63.  ``sounding`` is False where
    even full key scaling leaves the operator below TL 63, or its amplitude
    is 0: it gets TL 63 and full key scaling, as quiet as it can be if its
    channel is keyed (operator 1 of a sine without a partner, which TL 63
    alone left 47 dB down, louder than a quiet partial on operator 2).

    The bottom matters because one global gain places the input on the chip's
    range: quiet partials falling below TL 63 forced a higher gain that clips
    the loudest at TL 0.  adplay, 23 clips: `model` 2.596 -> 2.512 dB (chord
    1.62 -> 1.24, opl_random_21 2.17 -> 2.05, guitar 2.11 -> 1.91), `sines`
    3.590 -> 3.508.  The levels between TL steps: `model` 2.420 -> 2.403 dB,
    `sines` 3.508 -> 3.484 (flute 2.03 -> 1.96, speech_a 3.75 -> 3.69).
    """
    # C order: the deep operators are written back through ``ravel()``, which is a copy
    # (and the writes lost) for any other layout -- a column-permuted table, say
    a = np.ascontiguousarray(amp_out, np.float32)
    want = np.log10(np.maximum(a, np.float32(1e-9)))
    want *= -_EG_PER_DECADE
    want += _EG_FULL_SCALE                                            # attenuation, EG units
    term = np.asarray(ksl_term_eg, np.int64)
    # no key scaling, a quarter or half of it everywhere; all of it (a multiple of 4 EG
    # units like none) is a choice only for operators that TL 63 alone leaves too loud
    best, tl, depth = _nearest_level(want, term, depths=(0, 1, 2))
    deep = np.flatnonzero((want > np.float32(4 * 63.5)) & (a > 0))
    if deep.size:
        term = np.broadcast_to(term, want.shape)
        b2, t2, d2 = _nearest_level(want.ravel()[deep], term.ravel()[deep], depths=(0, 1, 2, 3))
        best.ravel()[deep], tl.ravel()[deep], depth.ravel()[deep] = b2, t2, d2
    sounding = np.isfinite(best) & (a > 0)
    tl = np.where(sounding, tl, 63).astype(np.int64)
    code = np.asarray(R.KSL_CODES_BY_DEPTH)[np.where(sounding, depth, 3)]
    return tl, code, sounding


def in_phase(key: np.ndarray, mult1: np.ndarray, mult2: np.ndarray, *,
             previous: R.ChannelFrames | None = None) -> np.ndarray:
    """(n_frames, n_channels) bool: operator 1 has run at operator 2's MULT on every keyed
    frame since the channel's last key-on, which starts both phases at 0, so the two
    play in phase (:attr:`~wav2vgm.opl3.registers.ChannelFrames.in_phase`); before the
    first key-on here, as ``previous``'s last frame left it (a reset chip: in phase)."""
    n, n_ch = key.shape
    was_keyed = np.zeros(n_ch, bool) if previous is None else previous.key[-1]
    carried = (np.ones(n_ch, bool) if previous is None or previous.in_phase is None
               else previous.in_phase[-1])
    key_on = key.copy()
    key_on[1:] &= ~key[:-1]
    key_on[0] &= ~was_keyed
    apart = mult1 != mult2
    apart &= key
    # the last event of each channel so far: 2 * row - 1 for a frame apart (on a key-on's
    # frame too) and 2 * row for a key-on, rows counted from 1 (-1: none here), so a
    # channel is in phase where the last is even
    event = np.arange(1, n + 1, dtype=np.int32)[:, None] * 2 * (apart | key_on)
    event += key_on & ~apart
    event -= 1
    last = np.maximum.accumulate(event, axis=0)
    return np.where(last < 0, carried[None, :], (last & 1) == 0)


FILL_IN_LEVELS = True      # helper_levels on (off: operator 2's TL steps alone, for benchmarks)
FILL_IN_MAX = 2.0 * FULL_SCALE      # operators 2 and 1 both at TL 0, in phase


def fill_in_eligible(voices: VoiceFrames) -> np.ndarray:
    """(n_frames, n_channels) bool: a sine channel whose operator 1 has no partial of its
    own and plays operator 2's waveform at its MULT, so it can fill in below operator 2's
    level (:func:`helper_levels`, where the two are also in phase) -- up to FILL_IN_MAX."""
    if not FILL_IN_LEVELS:
        return np.zeros(voices.amp2.shape, bool)
    return ((voices.cnt == 1) & (voices.fb == 0) & (voices.amp1 <= 0) & (voices.amp2 > 0)
            & (voices.ws1 == voices.ws2) & (voices.mult1 == voices.mult2))


def helper_levels(voices: VoiceFrames, frames: R.ChannelFrames, amp2_out: np.ndarray,
                  term: np.ndarray) -> None:
    """Operator 1 plays what operator 2's TL steps leave (in place on ``frames``).

    Where a sine channel's operator 1 has no partial of its own and plays in
    phase with operator 2 (:func:`fill_in_eligible`, :func:`in_phase`),
    amplitudes add: operator 2 takes the TL step at or under its amplitude
    ``amp2_out`` (int16 units) and operator 1 the rest, up to 8.6% (-21 dB) of
    it, so the sum lands within a fraction of a TL step; above TL 0, up to
    FILL_IN_MAX, operator 1 adds what operator 2 cannot (the loudness check
    plans with that reach, :func:`~.loudness.played_caps`).  A level that
    glides between TL steps otherwise moves as a staircase of 0.75 dB steps,
    whose steps splatter 40-60 dB under the partial across the spectrum,
    where a pure tone leaves the yardstick's bands empty.

    `python benchmarks/run.py tones --player adplay`, `model` with TL steps
    alone / with this, when it was written (before :func:`~.model.merge_doubles`,
    which took the tremolo to 4.30 / 2.36): a 440 Hz sine decaying 17 dB a second 1.27 -> 0.29 dB,
    five decaying harmonics 1.26 -> 0.69, a 5 Hz tremolo 5.35 -> 4.07, a 6 Hz
    vibrato 2.35 -> 1.55, overlapping plucks 1.69 -> 1.49.  The 23 clips, where
    operator 1 is seldom free, 2.067 -> 2.065 (opl_random_23 1.81 -> 1.77;
    `sines` 3.153 -> 3.151); the 60 s speed clip's VGM grows 0.1%.  Above TL 0
    it can lose: an ad-hoc synthetic drum loop, whose kicks TL 0 used to cap,
    5.25 -> 5.93.  Without the in-phase condition, an operator 1 back from
    playing a partner filled in out of phase (plucks 1.79 -> 2.75).
    """
    use = fill_in_eligible(voices) & frames.key & frames.in_phase
    if not use.any():
        return
    rows, cols = np.nonzero(use)
    want = np.minimum(amp2_out[rows, cols].astype(np.float64), FILL_IN_MAX)
    t = term[rows, cols]
    tl2, ksl2 = frames.tl2[rows, cols], frames.ksl2[rows, cols]
    att = lambda tl: tl * 4 + R.ksl_attenuation(t, ksl2)  # noqa: E731
    played = lambda tl: 10 ** ((float(_EG_FULL_SCALE) - att(tl)) / float(_EG_PER_DECADE))  # noqa: E731
    tl2 = np.where((played(tl2) > want * 1.0001) & (tl2 < 63), tl2 + 1, tl2)     # (not by rounding)
    tl1, ksl1, on1 = level_fields(np.maximum(want - played(tl2), 0.0), t)
    rows, cols = rows[on1], cols[on1]
    frames.tl2[rows, cols] = tl2[on1]
    frames.tl1[rows, cols] = tl1[on1]
    frames.ksl1[rows, cols] = ksl1[on1]


def quantise(voices: VoiceFrames, *, gain: float, previous: R.ChannelFrames | None = None
             ) -> R.ChannelFrames:
    """Apply the global ``gain`` (input units -> int16 units) and fix TL and key bits.

    A channel is keyed while its loudest operator is above TL 63; when it
    stops, its pitch and timbre are held at the last sounding frame's values
    so the key-off is the only write and the release does not glide.  A free
    operator 1 in phase with operator 2 refines its level (:func:`helper_levels`).
    """
    n_ch = voices.fnum.shape[1]
    fm = voices.cnt == 0
    term = R.ksl_term(voices.fnum, voices.block)
    # both operators in one call (one key-scale share per depth for the two)
    amp_out = np.stack([voices.amp1, voices.amp2]) * gain
    (tl1, tl2), (ksl1, ksl2), (on1, on2) = level_fields(amp_out, term)
    key = on2 | (~fm & on1)
    i64 = lambda a: a.astype(np.int64)  # noqa: E731
    f = R.ChannelFrames(fnum=i64(voices.fnum), block=i64(voices.block), key=key,
                        fb=i64(voices.fb), cnt=i64(voices.cnt), mult1=i64(voices.mult1),
                        mult2=i64(voices.mult2), tl1=np.where(fm, voices.mod_tl1, tl1), tl2=tl2,
                        ws1=i64(voices.ws1), ws2=i64(voices.ws2), rr=RELEASE_RATE,
                        outputs=None if voices.outputs is None else voices.outputs.copy(),
                        ksl1=np.where(fm, 0, ksl1), ksl2=ksl2)
    # hold every field of a silent channel at its last keyed frame (forward fill), before
    # the first at ``previous``'s last frame or the silent default; only the silent cells
    # are looked up (0-0.3% of them on the 60 s clip): channel by channel, each run of
    # them follows the keyed frame it holds (none for a run from frame 0)
    cols, rows = np.nonzero(~key.T)
    if rows.size:
        starts = np.ones(rows.size, bool)
        starts[1:] = (rows[1:] != rows[:-1] + 1) | (cols[1:] != cols[:-1])
        last = rows[np.maximum.accumulate(np.where(starts, np.arange(rows.size), 0))] - 1
        held = last >= 0
        for name in _SILENT_DEFAULT:
            a = getattr(f, name)
            if previous is not None:
                before = getattr(previous, name)[-1]
            else:
                before = np.full(n_ch, _SILENT_DEFAULT[name])
            a[rows, cols] = np.where(held, a[last, cols], before[cols])
    # (the voice table's multipliers: the hold above changed only frames that are not keyed)
    f.in_phase = in_phase(key, voices.mult1, voices.mult2, previous=previous)
    helper_levels(voices, f, amp_out[1], term)
    return f


_SILENT_DEFAULT = {"fnum": 0, "block": 0, "fb": 0, "cnt": 1, "mult1": 1, "mult2": 1,
                   "tl1": 63, "tl2": 63, "ws1": 0, "ws2": 0, "ksl1": 0, "ksl2": 0}


def greedy_match(cost: np.ndarray) -> np.ndarray:
    """Pair new items (rows) with tracks (columns), cheapest pairs first.

    ``cost``: (n_new, n_tracks), ``inf`` where a pair is not allowed.  Returns
    (n_tracks,) the row given to each track, -1 for none.  This is how a
    partial or voice keeps its channel from one frame to the next.
    """
    n_new, n_tracks = cost.shape
    out = np.full(n_tracks, -1, np.int64)
    if n_new == 0 or n_tracks == 0:
        return out
    rows, cols = np.nonzero(cost < np.inf)
    out[:] = greedy_pairs(zip(cost[rows, cols].tolist(), rows.tolist(), cols.tolist()), n_tracks)
    return out


def greedy_pairs(pairs, n_tracks: int) -> list[int]:
    """The greedy matching itself, on plain lists (fast for the few pairs of one frame).

    ``pairs``: (cost, row, track) tuples of the allowed pairs.  Cheapest
    first, ties to the lower row and then the lower track, each pair is
    taken if neither its row nor its track is.  Returns the row given to
    each of the ``n_tracks`` tracks, -1 for none.
    """
    track_row = [-1] * n_tracks
    row_taken = set()
    for _, r, c in sorted(pairs):
        if track_row[c] < 0 and r not in row_taken:
            track_row[c] = r
            row_taken.add(r)
    return track_row


def greedy_match_frames(cost: np.ndarray) -> np.ndarray:
    """:func:`greedy_match` for many frames at once, from the rows' side.

    ``cost``: (n_frames, n_new, n_tracks), ``inf`` where a pair is not
    allowed.  Returns (n_frames, n_new) the track given to each row, -1 for
    none: the pairs that greedy matching (cheapest first; ties go to the
    lower row, then the lower track) would choose.  Such a matching is what
    repeatedly taking every pair that is the cheapest of both its row and
    its track gives, which runs over all frames together.
    """
    n, n_new, n_tracks = cost.shape
    link = np.full((n, n_new), -1, np.int64)
    if n == 0 or n_new == 0 or n_tracks == 0:
        return link
    cost = np.array(cost, np.float64)
    rows = np.arange(n_new)
    frames = np.flatnonzero(np.isfinite(cost).any(axis=(1, 2)))
    while frames.size:
        c = cost[frames]
        track_of_row = np.argmin(c, axis=2)                                   # (k, n_new)
        row_of_track = np.argmin(c, axis=1)                                   # (k, n_tracks)
        finite = np.isfinite(np.take_along_axis(c, track_of_row[..., None], axis=2)[..., 0])
        mutual = finite & (np.take_along_axis(row_of_track, track_of_row, axis=1) == rows)
        f, r = np.nonzero(mutual)
        t = track_of_row[f, r]
        link[frames[f], r] = t
        cost[frames[f], r, :] = np.inf
        cost[frames[f], :, t] = np.inf
        frames = frames[np.isfinite(cost[frames]).any(axis=(1, 2))]
    return link
