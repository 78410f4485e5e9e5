"""A numpy YMF262 (OPL3) that follows Nuked-OPL3 1.8's arithmetic.

Laid out in the chip's own blocks, as Nuked-OPL3 and ymfm are:

* **timers** -- the global sample counter drives the envelope clock
  (``eg_state``, ``eg_add``, ``eg_timer_lo``), tremolo and vibrato;
* **envelope generator** -- attack/decay/sustain/release per slot, simulated
  exactly but only at the samples where something can change;
* **phase generator** -- integer phase accumulators (19 bits seen through a
  10-bit window), vibrato, key-on phase reset, rhythm-mode noise phases;
* **operator** -- log-sin + exp table lookups, eight waveforms, feedback;
* **channel / mixer** -- 2-op and 4-op routing latched at 0xC0 writes, the
  output bits, int16 wrap per channel, Nuked's one- and two-sample mixing
  delays, int16 clipping.

:meth:`Chip.generate` renders a whole span of samples with array operations
over time.  A span runs from one *hard* write to the next: writes that only
move a level or a pitch under held keys (:meth:`Chip.is_soft` -- most of what
a converter writes) ride inside it as per-sample register values
(:meth:`Chip.write_soft`), sample-exact with cutting the span at each one.
Inside a span, envelopes that cannot move are filled at once and decays and
releases run as cumulative sums; operators are evaluated layer by layer of
modulation depth; only operators with feedback (whose input is their own
previous outputs) step sample by sample, in a plain loop each (vectorised
across operators when there are many, as in :mod:`wav2vgm.opl3.voices`, which
reuses the operator blocks to render thousands of independent voices at once).
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from . import registers as R
from .queue import WRITE_SPACING
from .tables import EXP, KSL_SHIFT, KSL_TOP, MULT_X2, EG_INCSTEP, WAVE_LEVEL, WAVE_NEG

__all__ = ["Chip", "render_writes", "render_blocks", "operator_output", "phase_increment",
           "feedback_operator", "lfo_tremolo", "vibrato_offset"]

ATTACK, DECAY, SUSTAIN, RELEASE = 0, 1, 2, 3
KEY_NORMAL, KEY_DRUM = 1, 2
CH_2OP, CH_4OP, CH_4OP2, CH_DRUM = 0, 1, 2, 3

MOD_ZERO = -1      # slot modulation input: nothing
MOD_FEEDBACK = -2  # slot modulation input: its own feedback

_MAX_SPAN = 4096   # samples rendered per internal span (bounds memory)
_WRITE_CHUNK = 1 << 16   # writes :func:`render_blocks` turns into Python ints at a time
_NEVER = 1 << 62         # the time of the write that ends each chunk

# --------------------------------------------------------------------------
# Operator block: table lookups shared with the batch voice renderer
# --------------------------------------------------------------------------
_EXP_LINEAR = ((EXP[np.arange(0x2000) & 0xFF].astype(np.int32) << 1)
               >> (np.arange(0x2000) >> 8)).astype(np.int32)
"""Linear magnitude for every attenuation level 0-0x1FFF (``OPL3_EnvelopeCalcExp``)."""
_WAVE_LEVEL_FLAT = WAVE_LEVEL.reshape(-1).astype(np.int32)
_WAVE_NEGMASK_FLAT = np.where(WAVE_NEG.reshape(-1), -1, 0).astype(np.int32)


def operator_output(phase, ws, eg_out):
    """Operator output for 10-bit ``phase`` (incl. modulation), waveform ``ws`` and envelope ``eg_out``.

    ``phase`` may be any integer array (it is masked to 10 bits); ``ws`` and
    ``eg_out`` broadcast against it.  Returns int32 values in -4085..4084,
    one's-complemented in the negative half-waves exactly as the chip does.
    """
    idx = ((np.asarray(ws, dtype=np.int32) << 10)
           | (np.asarray(phase) & 0x3FF).astype(np.int32, copy=False))
    level = _WAVE_LEVEL_FLAT[idx] + (np.asarray(eg_out, dtype=np.int32) << 3)
    return _EXP_LINEAR[np.minimum(level, 0x1FFF)] ^ _WAVE_NEGMASK_FLAT[idx]


def feedback_operator(phase, ws, eg_out, fb, hist):
    """Outputs of operators fed back onto themselves, stepping sample by sample.

    ``phase``: (n_ops, n_samples) 10-bit phases; ``ws``: (n_ops,);
    ``eg_out``: (n_ops, n_samples) or (n_ops, 1); ``fb``: (n_ops,) feedback 1-7;
    ``hist``: (n_ops, 2) the two previous outputs (``out[n-1]``, ``out[n-2]``),
    updated in place.  The modulation is ``(out[n-1] + out[n-2]) >> (9 - fb)``.
    """
    n_ops, n = phase.shape
    if n_ops <= _SCALAR_FEEDBACK_OPS:
        return _feedback_scalar(phase, ws, eg_out, fb, hist)
    out = np.empty((n_ops, n), dtype=np.int32)
    base = np.asarray(ws, dtype=np.int32) << 10
    shift = (9 - np.asarray(fb, dtype=np.int32))
    env8 = np.asarray(eg_out, dtype=np.int32) << 3
    env_const = env8.shape[1] == 1
    o1 = hist[:, 0].astype(np.int32)
    o2 = hist[:, 1].astype(np.int32)
    ph = phase.astype(np.int32)
    e = env8[:, 0]
    for t in range(n):
        idx = base | ((ph[:, t] + ((o1 + o2) >> shift)) & 0x3FF)
        if not env_const:
            e = env8[:, t]
        y = _EXP_LINEAR[np.minimum(_WAVE_LEVEL_FLAT[idx] + e, 0x1FFF)] ^ _WAVE_NEGMASK_FLAT[idx]
        out[:, t] = y
        o2 = o1
        o1 = y
    hist[:, 0] = o1
    hist[:, 1] = o2
    return out


_SCALAR_FEEDBACK_OPS = 32    # up to this many operators a plain Python loop per operator is faster
_WAVE_LEVEL_LIST = _WAVE_LEVEL_FLAT.tolist()
_EXP_LINEAR_LIST = _EXP_LINEAR.tolist()
_WAVE_NEGMASK_LIST = _WAVE_NEGMASK_FLAT.tolist()


def _feedback_scalar(phase, ws, eg_out, fb, hist):
    """:func:`feedback_operator` for a few operators: one scalar loop each (same arithmetic)."""
    n_ops, n = phase.shape
    out = np.empty((n_ops, n), dtype=np.int32)
    wave, exp_, neg = _WAVE_LEVEL_LIST, _EXP_LINEAR_LIST, _WAVE_NEGMASK_LIST
    env8 = np.asarray(eg_out, dtype=np.int64) << 3
    ws = np.broadcast_to(np.asarray(ws), (n_ops,))
    fb = np.broadcast_to(np.asarray(fb), (n_ops,))
    for j in range(n_ops):
        base = int(ws[j]) << 10
        shift = 9 - int(fb[j])
        o1, o2 = int(hist[j, 0]), int(hist[j, 1])
        ph = phase[j].tolist()
        if env8.shape[1] == 1:
            # a constant envelope: the waveform's 1024 outputs at it, one lookup a sample
            # (the same numbers as below)
            w = slice(base, base + 1024)
            table = (_EXP_LINEAR[np.minimum(_WAVE_LEVEL_FLAT[w] + int(env8[j, 0]), 0x1FFF)]
                     ^ _WAVE_NEGMASK_FLAT[w]).tolist()
            y_row = []
            append = y_row.append
            for p in ph:
                o2, o1 = o1, table[(p + ((o1 + o2) >> shift)) & 0x3FF]
                append(o1)
        else:
            y_row = [0] * n
            env = env8[j].tolist()
            for t in range(n):
                i = base | ((ph[t] + ((o1 + o2) >> shift)) & 0x3FF)
                lv = wave[i] + env[t]
                y = exp_[lv if lv < 0x1FFF else 0x1FFF] ^ neg[i]
                y_row[t] = y
                o2 = o1
                o1 = y
        out[j] = y_row
        hist[j, 0] = o1
        hist[j, 1] = o2
    return out


def phase_increment(fnum, block, mult):
    """Phase accumulator increment per native sample: ``((fnum << block) >> 1) * MULT_X2 >> 1``."""
    fnum = np.asarray(fnum, dtype=np.int64)
    return (((fnum << np.asarray(block, dtype=np.int64)) >> 1)
            * MULT_X2[np.asarray(mult, dtype=np.int64)]) >> 1


# --------------------------------------------------------------------------
# Timers: LFOs and the envelope clock, as functions of the absolute sample
# --------------------------------------------------------------------------
def lfo_tremolo(sample_index, *, deep: bool):
    """Tremolo attenuation (EG units) during each absolute sample (3.7 Hz triangle)."""
    pos = (np.asarray(sample_index) // 64) % 210
    shift = 2 if deep else 4
    return np.where(pos < 105, pos >> shift, (210 - pos) >> shift)


def vibrato_offset(sample_index, fnum, *, deep: bool):
    """F-number offset added by vibrato during each sample (8 steps of 1024 samples)."""
    vibpos = (np.asarray(sample_index) >> 10) & 7
    rng = (np.asarray(fnum) >> 7) & 7
    rng = np.where((vibpos & 3) == 0, 0, np.where(vibpos & 1, rng >> 1, rng))
    rng = rng >> (0 if deep else 1)
    return np.where(vibpos & 4, -rng, rng)


def _eg_clock(k0: int, n: int):
    """Envelope clock during samples k0..k0+n-1: (eg_state, eg_add, eg_timer_lo).

    Nuked updates them at the end of each sample: ``eg_state`` toggles every
    sample; on odd samples ``eg_add``/``eg_timer_lo`` are refreshed from the
    envelope timer T, which counts every second sample.  During sample k the
    values in force come from ``T = (k - 2) // 2``.
    """
    k = np.arange(k0, k0 + n, dtype=np.int64)
    state = (k & 1).astype(np.int32)
    T = (k - 2) // 2
    valid = (T > 0) & ((T & 0x1FFF) != 0)
    low = np.where(T > 0, T & -T, 1)
    ctz = np.log2(low).astype(np.int32)
    add = np.where(valid, ctz + 1, 0).astype(np.int32)
    lo = np.where(T > 0, T & 3, 0).astype(np.int32)
    return state, add, lo


# --------------------------------------------------------------------------
# Rhythm-mode noise: the 23-bit LFSR, stepped once per slot per sample
# --------------------------------------------------------------------------
_NOISE_PERIOD = (1 << 23) - 1
_noise_bits: np.ndarray | None = None


def _noise_sequence() -> np.ndarray:
    """Bit 0 of the noise LFSR after each step (seed 1; b[t+23] = b[t] ^ b[t+14])."""
    global _noise_bits
    if _noise_bits is None:
        b = np.zeros(_NOISE_PERIOD + 64, dtype=np.uint8)
        b[0] = 1
        length = 23
        while length < b.size:
            k = 0
            while 23 << (k + 1) <= length:
                k += 1
            m = min(9 << k, b.size - length)
            t = np.arange(length - (23 << k), length - (23 << k) + m)
            b[length:length + m] = b[t] ^ b[t + (14 << k)]
            length += m
        _noise_bits = b[:_NOISE_PERIOD]
    return _noise_bits


# --------------------------------------------------------------------------
# The chip
# --------------------------------------------------------------------------
_AD_SLOT = np.full(32, -1, dtype=np.int64)
for _off in R.OPERATOR_OFFSETS:
    _AD_SLOT[_off] = _off - 2 * (_off // 8)



class Chip:
    """One OPL3, written register by register and rendered span by span.

    >>> chip = Chip()
    >>> chip.write(0x105, 1)
    >>> stereo = chip.generate(49716)   # (n_samples, 2) int16: outputs A (left), B (right)

    A write takes effect from the next generated sample, as Nuked's
    ``OPL3_WriteReg`` does.
    """

    def __init__(self):
        self.reset()

    # -- state ------------------------------------------------------------------
    def reset(self) -> None:
        self.regs = bytearray(R.N_REGISTERS)
        self.sample = 0                      # absolute native sample counter
        self.newm = 0
        self.nts = 0
        self.rhy = 0
        self.dam = False
        self.dvb = False
        # channels
        # what soft writes change (write_soft), kept together so one copy snapshots them
        self._ch_lp = np.zeros((2, 18), np.int64)
        self.ch_fnum, self.ch_block = self._ch_lp
        self.ch_ksv = np.zeros(18, np.int64)
        self.ch_fb = np.zeros(18, np.int64)
        self.ch_con = np.zeros(18, np.int64)
        self.ch_alg = np.zeros(18, np.int64)
        self.ch_type = np.zeros(18, np.int64)
        self.ch_cha = np.ones(18, bool)
        self.ch_chb = np.ones(18, bool)
        self.ch_out = np.full((18, 4), -1, np.int64)   # slots summed into each channel
        self.pair = np.arange(18)
        for c in (0, 1, 2, 9, 10, 11):
            self.pair[c], self.pair[c + 3] = c + 3, c
        # slots
        z = lambda: np.zeros(36, np.int64)  # noqa: E731
        self._slot_lp = np.zeros((4, 36), np.int64)
        self.tl, self.ksl, self.eg_ksl, self.mult = self._slot_lp
        self.ar, self.dr, self.sl, self.rr, self.ws = z(), z(), z(), z(), z()
        self.am, self.vib, self.egt, self.ksr, self.key = z(), z(), z(), z(), z()
        self.eg_rout = np.full(36, 0x1FF, np.int64)
        self.eg_gen = np.full(36, RELEASE, np.int64)
        self.pg_phase = z()
        self.mod_src = np.full(36, MOD_ZERO, np.int64)
        self.hist = np.zeros((36, 2), np.int32)        # out[n-1], out[n-2] per slot
        self.rm_tc_bits = (0, 0)                        # TC phase bits 3 and 5 of the last sample
        self._layer_cache: dict = {}
        self._routing_cache: dict = {}
        self._soft_states: list = []                    # write_soft: register values ...
        self._soft_cuts: list[int] = []                 # ... from these samples of the next span
        self._static: np.ndarray | None = None          # _static_envelopes, until state moves
        for ch in range(18):
            self._setup_alg(ch)

    def _channel_slots(self, ch: int) -> tuple[int, int]:
        return int(R.CHANNEL_SLOTS[ch, 0]), int(R.CHANNEL_SLOTS[ch, 1])

    def _update_ksl(self, ch: int) -> None:
        ksl = (int(KSL_TOP[self.ch_fnum[ch] >> 6]) << 2) - ((8 - int(self.ch_block[ch])) << 5)
        for s in self._channel_slots(ch):
            self.eg_ksl[s] = max(ksl, 0)

    # -- routing (OPL3_ChannelSetupAlg) -------------------------------------------
    def _setup_alg(self, ch: int) -> None:
        s0, s1 = self._channel_slots(ch)
        out = self.ch_out
        if self.ch_type[ch] == CH_DRUM:
            if ch in (7, 8):
                self.mod_src[s0] = self.mod_src[s1] = MOD_ZERO
                return
            self.mod_src[s0] = MOD_FEEDBACK
            self.mod_src[s1] = s0 if (self.ch_alg[ch] & 1) == 0 else MOD_ZERO
            return
        if self.ch_alg[ch] & 0x08:
            return
        if self.ch_alg[ch] & 0x04:
            p = int(self.pair[ch])
            p0, p1 = self._channel_slots(p)
            out[p] = -1
            alg = self.ch_alg[ch] & 3
            self.mod_src[p0] = MOD_FEEDBACK
            if alg == 0:
                self.mod_src[p1], self.mod_src[s0], self.mod_src[s1] = p0, p1, s0
                out[ch] = (s1, -1, -1, -1)
            elif alg == 1:
                self.mod_src[p1], self.mod_src[s0], self.mod_src[s1] = p0, MOD_ZERO, s0
                out[ch] = (p1, s1, -1, -1)
            elif alg == 2:
                self.mod_src[p1], self.mod_src[s0], self.mod_src[s1] = MOD_ZERO, p1, s0
                out[ch] = (p0, s1, -1, -1)
            else:
                self.mod_src[p1], self.mod_src[s0], self.mod_src[s1] = MOD_ZERO, p1, MOD_ZERO
                out[ch] = (p0, s0, s1, -1)
            return
        self.mod_src[s0] = MOD_FEEDBACK
        if self.ch_alg[ch] & 1:
            self.mod_src[s1] = MOD_ZERO
            out[ch] = (s0, s1, -1, -1)
        else:
            self.mod_src[s1] = s0
            out[ch] = (s1, -1, -1, -1)

    def _voice_slots(self, ch: int) -> list[int]:
        """The channel's slots, with its pair's for the first half of a 4-op pair."""
        slots = list(self._channel_slots(ch))
        if self.newm and self.ch_type[ch] == CH_4OP:
            slots += list(self._channel_slots(int(self.pair[ch])))
        return slots

    def _key_slots(self, ch: int) -> list[int]:
        """The slots a channel's key bit drives (none for the second half of a 4-op pair)."""
        if self.newm and self.ch_type[ch] not in (CH_4OP, CH_2OP, CH_DRUM):
            return []
        return self._voice_slots(ch)

    def _key(self, ch: int, on: bool) -> None:
        for s in self._key_slots(ch):
            if on:
                self.key[s] |= KEY_NORMAL
            else:
                self.key[s] &= ~KEY_NORMAL

    def _drum_key(self, slot: int, on: bool) -> None:
        if on:
            self.key[slot] |= KEY_DRUM
        else:
            self.key[slot] &= ~KEY_DRUM

    def _update_rhythm(self, v: int) -> None:
        self.rhy = v & 0x3F
        s6, s7, s8 = (self._channel_slots(c) for c in (6, 7, 8))
        if self.rhy & 0x20:
            self.ch_out[6] = (s6[1], s6[1], -1, -1)
            self.ch_out[7] = (s7[0], s7[0], s7[1], s7[1])
            self.ch_out[8] = (s8[0], s8[0], s8[1], s8[1])
            for c in (6, 7, 8):
                self.ch_type[c] = CH_DRUM
                self._setup_alg(c)
            self._drum_key(s7[0], bool(self.rhy & 0x01))   # HH
            self._drum_key(s8[1], bool(self.rhy & 0x02))   # TC
            self._drum_key(s8[0], bool(self.rhy & 0x04))   # TOM
            self._drum_key(s7[1], bool(self.rhy & 0x08))   # SD
            self._drum_key(s6[0], bool(self.rhy & 0x10))   # BD
            self._drum_key(s6[1], bool(self.rhy & 0x10))
        else:
            for c in (6, 7, 8):
                self.ch_type[c] = CH_2OP
                self._setup_alg(c)
                for s in self._channel_slots(c):
                    self._drum_key(s, False)

    # -- register writes (OPL3_WriteReg) ------------------------------------------
    def write(self, reg: int, value: int) -> None:
        """Write ``value`` (0-255) to register ``reg`` (0x000-0x1FF).

        Not while soft writes wait for the next :meth:`generate` (they would
        land after this one): raises :class:`~wav2vgm.errors.ParameterError`.
        """
        if self._soft_cuts:
            raise ParameterError(f"write of {value:#04x} to register {reg:#05x} while soft "
                                 f"writes are queued: generate() them first")
        self._static = None
        self._write(reg, value)

    def _write(self, reg: int, value: int) -> None:
        reg = int(reg) & 0x1FF
        v = int(value) & 0xFF
        self.regs[reg] = v
        high = reg >> 8
        regm = reg & 0xFF
        top = regm & 0xF0
        if top == 0x00:
            if high:
                if regm & 0x0F == 0x04:
                    for bit in range(6):
                        c = bit if bit < 3 else bit + 6
                        on = (v >> bit) & 1
                        self.ch_type[c] = CH_4OP if on else CH_2OP
                        self.ch_type[c + 3] = CH_4OP2 if on else CH_2OP
                elif regm & 0x0F == 0x05:
                    self.newm = v & 1
            elif regm & 0x0F == 0x08:
                self.nts = (v >> 6) & 1
            return
        if top in (0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xE0, 0xF0):
            off = _AD_SLOT[regm & 0x1F]
            if off < 0:
                return
            s = 18 * high + int(off)
            if top in (0x20, 0x30):
                self.am[s], self.vib[s], self.egt[s] = v >> 7, (v >> 6) & 1, (v >> 5) & 1
                self.ksr[s], self.mult[s] = (v >> 4) & 1, v & 0x0F
            elif top in (0x40, 0x50):
                self.ksl[s], self.tl[s] = v >> 6, v & 0x3F
            elif top in (0x60, 0x70):
                self.ar[s], self.dr[s] = v >> 4, v & 0x0F
            elif top in (0x80, 0x90):
                sl = v >> 4
                self.sl[s], self.rr[s] = (0x1F if sl == 0x0F else sl), v & 0x0F
            else:
                self.ws[s] = v & (0x07 if self.newm else 0x03)
            return
        if regm == 0xBD:
            if not high:
                self.dam, self.dvb = bool(v & 0x80), bool(v & 0x40)
                self._update_rhythm(v)
            return
        if regm & 0x0F >= 9:
            return
        ch = 9 * high + (regm & 0x0F)
        if top == 0xA0:
            if self.newm and self.ch_type[ch] == CH_4OP2:
                return
            self.ch_fnum[ch] = (self.ch_fnum[ch] & 0x300) | v
            self._freq_changed(ch)
        elif top == 0xB0:
            if not (self.newm and self.ch_type[ch] == CH_4OP2):
                self.ch_fnum[ch] = (self.ch_fnum[ch] & 0xFF) | ((v & 3) << 8)
                self.ch_block[ch] = (v >> 2) & 7
                self._freq_changed(ch)
            self._key(ch, bool(v & 0x20))
        elif top == 0xC0:
            self._write_c0(ch, v)

    def _freq_changed(self, ch: int) -> None:
        self.ch_ksv[ch] = (self.ch_block[ch] << 1) | ((self.ch_fnum[ch] >> (9 - self.nts)) & 1)
        self._update_ksl(ch)
        if self.newm and self.ch_type[ch] == CH_4OP:
            p = int(self.pair[ch])
            self.ch_fnum[p], self.ch_block[p], self.ch_ksv[p] = (
                self.ch_fnum[ch], self.ch_block[ch], self.ch_ksv[ch])
            self._update_ksl(p)

    def _write_c0(self, ch: int, v: int) -> None:
        self.ch_fb[ch] = (v & 0x0E) >> 1
        self.ch_con[ch] = v & 1
        self.ch_alg[ch] = self.ch_con[ch]
        if self.newm and self.ch_type[ch] == CH_4OP:
            p = int(self.pair[ch])
            self.ch_alg[p] = 0x04 | (self.ch_con[ch] << 1) | self.ch_con[p]
            self.ch_alg[ch] = 0x08
            self._setup_alg(p)
        elif self.newm and self.ch_type[ch] == CH_4OP2:
            p = int(self.pair[ch])
            self.ch_alg[ch] = 0x04 | (self.ch_con[p] << 1) | self.ch_con[ch]
            self.ch_alg[p] = 0x08
            self._setup_alg(ch)
        else:
            self._setup_alg(ch)
        if self.newm:
            self.ch_cha[ch], self.ch_chb[ch] = bool(v & 0x10), bool(v & 0x20)
        else:
            self.ch_cha[ch] = self.ch_chb[ch] = True

    # -- rendering ------------------------------------------------------------------
    def generate(self, n_samples: int) -> np.ndarray:
        """Render ``n_samples`` native samples; returns (n_samples, 2) int16 (A, B).

        Soft writes queued by :meth:`write_soft` land at their samples inside.
        """
        n_samples = int(n_samples)
        timeline = None
        if self._soft_cuts:
            states, cuts = self._soft_states, self._soft_cuts
            lengths = np.diff(np.append(np.minimum(cuts, n_samples), n_samples))
            # what each state sets, worked out once per state and then repeated per sample
            slot_lp, ch_lp = (np.stack(field, axis=-1) for field in zip(*states))
            per_state = self._level_and_pitch(*slot_lp, *(a[R.SLOT_CHANNEL] for a in ch_lp))
            timeline = tuple(np.repeat(a, lengths, axis=-1) for a in per_state)   # (36, n) each
            self._soft_states, self._soft_cuts = [], []
        out = np.empty((n_samples, 2), np.int16)
        done = 0
        while done < n_samples:
            n = min(_MAX_SPAN, n_samples - done)
            part = None if timeline is None else tuple(a[:, done:done + n] for a in timeline)
            out[done:done + n] = self._span(n, part)
            done += n
        return out

    def _held_timeline(self) -> tuple:
        """:meth:`_level_and_pitch` of the registers as they stand, (36, 1) each."""
        ch = R.SLOT_CHANNEL
        return tuple(a[:, None] for a in self._level_and_pitch(
            self.tl, self.ksl, self.eg_ksl, self.mult, self.ch_fnum[ch], self.ch_block[ch]))

    def _level_and_pitch(self, tl, ksl, eg_ksl, mult, fnum, block) -> tuple:
        """Per slot (36, ...) the attenuation its level registers add to the envelope's, and
        either its phase increment (no vibrato on the chip) or, where some operator has
        vibrato, its (F-number, block, multiplier) for the span to modulate."""
        level = ((tl << 2) + (eg_ksl >> KSL_SHIFT[ksl])).astype(np.int32)
        if self.vib.any():
            return level, fnum, block, mult
        return level, phase_increment(fnum, block, mult)

    # -- writes inside a span ----------------------------------------------------------
    def is_soft(self, reg: int, value: int) -> bool:
        """Whether a write only changes a level or a pitch while every key stays as it is.

        Such writes (total level / key scale level; the multiplier; F-number
        and block where the key stays and the key-scale rate changes only
        under envelopes that cannot move) leave the envelope
        generator's state machine alone, so a span can carry them as
        per-sample register values instead of being cut at each one.
        """
        reg = int(reg) & 0x1FF
        v = int(value) & 0xFF
        regm = reg & 0xFF
        top = regm & 0xF0
        if top in (0x40, 0x50):
            return True
        if top in (0x20, 0x30):              # the multiplier may change, nothing else
            off = _AD_SLOT[regm & 0x1F]
            if off < 0:
                return True
            s = 18 * (reg >> 8) + int(off)
            return (self.am[s], self.vib[s], self.egt[s], self.ksr[s]) == (
                v >> 7, (v >> 6) & 1, (v >> 5) & 1, (v >> 4) & 1)
        if top not in (0xA0, 0xB0) or (regm & 0x0F) >= 9:
            return False
        ch = 9 * (reg >> 8) + (regm & 0x0F)
        if self.newm and self.ch_type[ch] == CH_4OP2:
            if top == 0xA0:
                return True                  # ignored by the chip
            fnum, block = int(self.ch_fnum[ch]), int(self.ch_block[ch])
        elif top == 0xA0:
            fnum, block = (int(self.ch_fnum[ch]) & 0x300) | v, int(self.ch_block[ch])
        else:
            fnum, block = (int(self.ch_fnum[ch]) & 0xFF) | ((v & 3) << 8), (v >> 2) & 7
        if ((block << 1) | ((fnum >> (9 - self.nts)) & 1)) != self.ch_ksv[ch]:
            # a new key-scale rate is harmless only to envelopes that cannot move
            slots = self._voice_slots(ch)
            if not (self._static_envelopes()[slots].all() and (self.eg_gen[slots] != ATTACK).all()):
                return False
        if top == 0xB0:
            on = KEY_NORMAL if v & 0x20 else 0
            if any((int(self.key[s]) & KEY_NORMAL) != on for s in self._key_slots(ch)):
                return False
        return True

    def write_soft(self, offset: int, reg: int, value: int) -> bool:
        """Write a soft register value (:meth:`is_soft`) that takes effect ``offset`` samples
        into the next :meth:`generate` call; returns False (and writes nothing) for a hard one.

        The same sound as generating up to ``offset``, writing, and generating on -- in one span.
        """
        if not self.is_soft(reg, value):
            return False
        offset = int(offset)
        if not self._soft_cuts:
            self._soft_states, self._soft_cuts = [self._levels_and_pitch()], [0]
        self._write(reg, value)
        if offset <= self._soft_cuts[-1]:
            self._soft_states[-1] = self._levels_and_pitch()
        else:
            self._soft_states.append(self._levels_and_pitch())
            self._soft_cuts.append(offset)
        return True

    def _levels_and_pitch(self) -> tuple:
        return self._slot_lp.copy(), self._ch_lp.copy()

    def _span(self, n: int, timeline=None) -> np.ndarray:
        """Render ``n`` samples.  ``timeline``: per sample (36, n) what :meth:`_level_and_pitch`
        gives where soft writes land inside the span; else the registers hold."""
        k0 = self.sample
        k = np.arange(k0, k0 + n, dtype=np.int64)
        clock = _eg_clock(k0, n)
        trem = lfo_tremolo(k, deep=self.dam)
        ch = R.SLOT_CHANNEL
        if timeline is None:
            timeline = self._held_timeline()
        level = timeline[0]

        # envelope generator -> attenuation per slot and sample
        eg_start = np.empty((36, n), np.int32)
        reset_at = np.full(36, -1, np.int64)
        static = self._static_envelopes()
        eg_start[static] = self.eg_rout[static][:, None]
        for s in np.flatnonzero(~static).tolist():
            reset_at[s] = self._envelope(s, n, clock, eg_start[s])
        self._static = None                          # the envelopes moved on
        eg_out = eg_start + level
        if self.am.any():
            eg_out += np.where(self.am[:, None] > 0, trem[None, :], 0)
        np.minimum(eg_out, 0x1FF, out=eg_out)

        # phase generator
        if len(timeline) == 2:
            inc = timeline[1]
        else:
            fnum, block, mult = timeline[1:]
            fnum = fnum + np.where(self.vib[:, None] > 0,
                                   vibrato_offset(k[None, :], fnum, deep=self.dvb), 0)
            inc = phase_increment(fnum, block, mult)
        inc = np.broadcast_to(inc, (36, n))
        # the accumulator before each sample's step, in one array changed in place: the
        # running sum of the increments, less this sample's, plus where the span starts
        acc = np.cumsum(inc, axis=1)
        total = acc[:, -1].copy()
        acc -= inc
        start = self.pg_phase.copy()
        acc += start[:, None]
        for s in np.flatnonzero(reset_at >= 0):     # a key-on resets the phase after sample r
            r = reset_at[s]
            self.pg_phase[s] = (total[s] - (acc[s, r] - start[s])) & 0x7FFFF
            acc[s, r + 1:] -= acc[s, r]
        keep = reset_at < 0
        self.pg_phase[keep] = (start[keep] + total[keep]) & 0x7FFFF
        acc >>= 9
        acc &= 0x3FF
        phase = acc.astype(np.int32)
        if self.rhy & 0x20:
            self._rhythm_phases(phase, k)

        # operators: fed-back ones first, then layer by layer (each modulated by the one before)
        out = np.empty((36, n), np.int32)
        fb_slots = np.flatnonzero((self.mod_src == MOD_FEEDBACK) & (self.ch_fb[ch] > 0))
        looped = fb_slots.size > 0 and bool((eg_out[fb_slots].min(axis=1) < 384).any())
        if looped:  # the loop costs the same for every operator: take the quiet ones too
            env = eg_out[fb_slots]
            if (env == env[:, :1]).all():
                env = env[:, :1]
            hist = self.hist[fb_slots].copy()
            out[fb_slots] = feedback_operator(phase[fb_slots], self.ws[fb_slots], env,
                                              self.ch_fb[ch[fb_slots]], hist)
        for depth, idx in enumerate(self._operator_layers(fb_slots if looped else ())):
            if idx.size == 0:
                continue
            src = self.mod_src[idx]
            ph = phase[idx] if depth == 0 else phase[idx] + out[src]
            out[idx] = operator_output(ph, self.ws[idx][:, None], eg_out[idx])

        # mixer with Nuked's delays: output A is mixed after slot 14, so it hears slots >= 15
        # one sample late; output B one sample later still, after slot 32
        ext = np.concatenate([self.hist[:, ::-1], out], axis=1)  # out[n-2], out[n-1], out...
        stereo = np.empty((n, 2), np.int16)
        for j, (late_from, delay) in enumerate(((15, 0), (33, 1))):
            val = np.empty((36, n), np.int32)
            val[:late_from] = ext[:late_from, 2 - delay:2 - delay + n]
            val[late_from:] = ext[late_from:, 1 - delay:1 - delay + n]
            # each channel's slots added a rank at a time (its first slot, then its second,
            # ...): a few whole-array additions (np.add.reduceat over the first axis took
            # about ten times as long)
            acc = np.zeros((18, n), np.int32)
            for channels, slots in self._routing():
                acc[channels] += val[slots]
            acc = ((acc + 0x8000) & 0xFFFF) - 0x8000             # (int16_t) per channel
            mask = self.ch_cha if j == 0 else self.ch_chb
            stereo[:, j] = np.clip(acc[mask].sum(axis=0), -32768, 32767)
        self.hist[:, 0] = out[:, -1]
        self.hist[:, 1] = ext[:, n]                              # out[n-2]
        self.sample += n
        return stereo

    def _routing(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The slots summed into each channel's output, a rank at a time: for the first slot
        of every channel, then the second, ..., the channels that have one and those slots."""
        key = self.ch_out.tobytes()
        r = self._routing_cache.get(key)
        if r is None:
            rows = [[int(x) for x in row if x >= 0] for row in self.ch_out]
            r = [(np.array([c for c, row in enumerate(rows) if len(row) > rank], np.int64),
                  np.array([row[rank] for row in rows if len(row) > rank], np.int64))
                 for rank in range(max(len(row) for row in rows))]
            self._routing_cache[key] = r
        return r

    def _operator_layers(self, done) -> list[np.ndarray]:
        """Slots not in ``done`` grouped by modulation depth: layer 0 has no operator input
        (none, or the feedback of a silent operator, taken as 0), layer d is modulated by layer d-1."""
        done = set(int(s) for s in done)
        key = (self.mod_src.tobytes(), tuple(sorted(done)))
        layers = self._layer_cache.get(key)
        if layers is None:
            depth = {}
            src = self.mod_src.tolist()
            for s in range(36):              # every modulator has a lower slot number
                depth[s] = depth[src[s]] + 1 if src[s] >= 0 and s not in done else 0
            n_layers = max(depth.values()) + 1
            layers = [np.array([s for s, d in depth.items() if d == k and s not in done], np.int64)
                      for k in range(n_layers)]
            self._layer_cache[key] = layers
        return layers

    def _static_envelopes(self) -> np.ndarray:
        """(36,) slots whose envelope cannot change during the coming span, whatever its
        clock: nothing pending (:meth:`_envelope`'s conditions) and no rate step that could fire.

        Kept until a span runs or a plain write lands: soft writes cannot change it (the
        key-scale rate they may change counts only for attacks, which they exclude).
        """
        if self._static is None:
            self._static = self._compute_static()
        return self._static

    def _compute_static(self) -> np.ndarray:
        e, gen, key = self.eg_rout, self.eg_gen, self.key != 0
        ks = self.ch_ksv[R.SLOT_CHANNEL] >> ((self.ksr ^ 1) << 1)
        reg_rate = np.select([gen == ATTACK, gen == DECAY, gen == SUSTAIN],
                             [self.ar, self.dr, np.where(self.egt > 0, 0, self.rr)], self.rr)
        rate_hi = np.minimum((ks + (reg_rate << 2)) >> 2, 15)
        eg_off = (e & 0x1F8) == 0x1F8
        pending = ((key & (gen == RELEASE)) | (~key & (gen != RELEASE)) | ((gen == ATTACK) & (e == 0))
                   | ((gen == DECAY) & ((e >> 4) == self.sl))
                   | ((gen != ATTACK) & eg_off & (e != 0x1FF)))
        can_fire = np.where(gen == ATTACK, key & (rate_hi != 15) & (reg_rate != 0),
                            ~eg_off & (reg_rate != 0))
        return ~pending & ~can_fire

    def _rhythm_phases(self, phase: np.ndarray, k: np.ndarray) -> None:
        """Replace the HH, SD and TC phases by the rhythm-mode bit mixes (Nuked 1.8)."""
        noise = _noise_sequence()
        hh = phase[13].copy()
        tc = phase[17].copy()
        hh2, hh3, hh7, hh8 = (hh >> 2) & 1, (hh >> 3) & 1, (hh >> 7) & 1, (hh >> 8) & 1
        tc3, tc5 = (tc >> 3) & 1, (tc >> 5) & 1
        tc3_prev = np.concatenate([[self.rm_tc_bits[0]], tc3[:-1]])
        tc5_prev = np.concatenate([[self.rm_tc_bits[1]], tc5[:-1]])
        base = (36 * k) % _NOISE_PERIOD
        n13 = noise[(base + 13) % _NOISE_PERIOD]
        n16 = noise[(base + 16) % _NOISE_PERIOD]
        x_hh = (hh2 ^ hh7) | (hh3 ^ tc5_prev) | (tc3_prev ^ tc5_prev)
        phase[13] = (x_hh << 9) | np.where((x_hh ^ n13) > 0, 0xD0, 0x34)
        phase[16] = (hh8 << 9) | ((hh8 ^ n16) << 8)
        x_tc = (hh2 ^ hh7) | (hh3 ^ tc5) | (tc3 ^ tc5)
        phase[17] = (x_tc << 9) | 0x100
        self.rm_tc_bits = (int(tc3[-1]), int(tc5[-1]))

    # -- envelope generator (OPL3_EnvelopeCalc) ------------------------------------
    def _envelope(self, s: int, n: int, clock, e_out: np.ndarray) -> int:
        """Simulate slot ``s``'s envelope over the span; fill ``e_out`` with the
        attenuation in force at the start of each sample; return the sample of
        a key-on phase reset or -1.

        Exact Nuked logic, evaluated only at the samples where something can
        change (a state change, a snap to 0x1FF, or a rate step firing).
        """
        e = int(self.eg_rout[s])
        gen = int(self.eg_gen[s])
        key = bool(self.key[s])
        sl = int(self.sl[s])
        egt = bool(self.egt[s])
        ch = int(R.SLOT_CHANNEL[s])
        ks = int(self.ch_ksv[ch]) >> ((int(self.ksr[s]) ^ 1) << 1)
        eg_state, eg_add, eg_lo = clock
        reset_at = -1
        t = 0
        cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

        def reg_rate_for(gen_: int, reset_: bool) -> int:
            if reset_:
                return int(self.ar[s])
            if gen_ == ATTACK:
                return int(self.ar[s])
            if gen_ == DECAY:
                return int(self.dr[s])
            if gen_ == SUSTAIN:
                return 0 if egt else int(self.rr[s])
            return int(self.rr[s])

        def shifts(reg_rate: int) -> np.ndarray:
            if reg_rate in cache:
                return cache[reg_rate]
            rate = ks + (reg_rate << 2)
            hi = min(rate >> 2, 15)
            lo = rate & 3
            if reg_rate == 0:
                sh = np.zeros(n, np.int32)
            elif hi < 12:
                es = hi + eg_add
                fire = (es == 12) | ((es == 13) & bool((lo >> 1) & 1)) | ((es == 14) & bool(lo & 1))
                sh = (fire & (eg_state == 1)).astype(np.int32)
            else:
                sh = (hi & 3) + EG_INCSTEP[lo][eg_lo]
                sh = np.where(sh & 4, 3, sh)
                sh = np.where(sh == 0, eg_state, sh).astype(np.int32)
            cache[reg_rate] = sh
            return sh

        while t < n:
            reset = key and gen == RELEASE
            reg_rate = reg_rate_for(gen, reset)
            sh = shifts(reg_rate)
            eg_off = (e & 0x1F8) == 0x1F8
            pending = (reset or (not key and gen != RELEASE)
                       or (gen == ATTACK and e == 0)
                       or (gen == DECAY and (e >> 4) == sl)
                       or (gen != ATTACK and eg_off and e != 0x1FF))
            if not pending:
                # only a firing step can change anything: jump to the next one
                if gen == ATTACK:
                    rate_hi = min((ks + (reg_rate << 2)) >> 2, 15)
                    can_fire = key and rate_hi != 15 and reg_rate != 0
                else:
                    can_fire = not eg_off and reg_rate != 0
                if not can_fire:
                    e_out[t:] = e
                    break
                if gen != ATTACK:
                    # decay, sustain and release add 1 << (shift - 1) per firing step: run
                    # them as a cumulative sum up to the first sample where the state changes
                    seg = sh[t:]
                    inc_run = np.where(seg > 0, 1 << np.maximum(seg - 1, 0), 0)
                    before = e + np.cumsum(inc_run) - inc_run
                    stop = (before & 0x1F8) == 0x1F8
                    if gen == DECAY:
                        stop |= (before >> 4) == sl
                    j = int(np.argmax(stop)) if stop.any() else seg.size
                    e_out[t:t + j] = before[:j]
                    if j == seg.size:
                        e = int(before[-1] + inc_run[-1])
                        break
                    e = int(before[j])
                    t += j
                    continue
                nz = np.flatnonzero(sh[t:])
                if nz.size == 0:
                    e_out[t:] = e
                    break
                f = t + int(nz[0])
                e_out[t:f] = e
                t = f
            # exact single step at sample t
            e_out[t] = e
            shift = int(sh[t])
            rate_hi = min((ks + (reg_rate << 2)) >> 2, 15)
            new_e = e
            inc = 0
            if reset and rate_hi == 15:
                new_e = 0
            if gen != ATTACK and not reset and eg_off:
                new_e = 0x1FF
            if gen == ATTACK:
                if e == 0:
                    gen = DECAY
                elif key and shift > 0 and rate_hi != 15:
                    inc = (~e) >> (4 - shift)
            elif gen == DECAY:
                if (e >> 4) == sl:
                    gen = SUSTAIN
                elif not eg_off and not reset and shift > 0:
                    inc = 1 << (shift - 1)
            else:
                if not eg_off and not reset and shift > 0:
                    inc = 1 << (shift - 1)
            e = (new_e + inc) & 0x1FF
            if reset:
                gen = ATTACK
                reset_at = t
            if not key:
                gen = RELEASE
            t += 1
        self.eg_rout[s] = e
        self.eg_gen[s] = gen
        return reset_at


def render_writes(times, regs, values, *, n_samples: int, write_spacing: int = WRITE_SPACING,
                  chip: Chip | None = None, progress=None) -> np.ndarray:
    """Render timed register writes to (n_samples, 2) int16 at the native rate.

    ``times`` are native-sample times (sorted).  ``write_spacing=2``
    (:data:`.queue.WRITE_SPACING`) models Nuked's buffered writes
    (``OPL3_WriteRegBuffered``, used by AdPlug and libvgm): each write lands
    at least 2 samples after the previous one and takes effect one sample
    later; ``0`` applies each write at its time.
    ``progress``: called with the number of samples rendered since the last call.
    """
    out = np.empty((int(n_samples), 2), np.int16)
    pos = 0
    for part in render_blocks(times, regs, values, n_samples=n_samples,
                              write_spacing=write_spacing, chip=chip, progress=progress):
        out[pos:pos + len(part)] = part
        pos += len(part)
    return out


def render_blocks(times, regs, values, *, n_samples: int, write_spacing: int = WRITE_SPACING,
                  chip: Chip | None = None, progress=None):
    """:func:`render_writes` a span at a time: yields (n, 2) int16 blocks of at most
    ``_MAX_SPAN`` samples that together are its ``n_samples``."""
    chip = chip or Chip()
    times = np.asarray(times, dtype=np.int64)
    regs, values = np.asarray(regs), np.asarray(values)
    if write_spacing and times.size:
        # each write lands write_spacing after the one before it, or at its time if later:
        # landing[i] = max over j <= i of (times[j] + spacing * (i - j)), then one sample on
        step = np.arange(times.size, dtype=np.int64)
        step *= int(write_spacing)
        landing = times - step
        np.maximum.accumulate(landing, out=landing)
        landing += step
        landing += 1
        times = landing
        del step
    n_samples = int(n_samples)
    n_writes = times.size
    pos = 0
    i = 0                   # the next write
    # the writes as Python ints a chunk at a time (the loop below is plain Python; whole
    # lists of a long file's writes would take tens of bytes per write), each chunk ending
    # in a write that never comes, so the loops need no bounds test
    base, t_l, r_l, v_l = 0, [_NEVER], [0], [0]

    def load(at: int):
        return at, *([*a[at:at + _WRITE_CHUNK].tolist(), fill]
                     for a, fill in ((times, _NEVER), (regs, 0), (values, 0)))

    while pos < n_samples:
        while True:                                    # due now: from this sample on
            while t_l[i - base] <= pos:
                chip.write(r_l[i - base], v_l[i - base])
                i += 1
            if i - base < len(t_l) - 1 or i >= n_writes:
                break
            base, t_l, r_l, v_l = load(i)
        # the span runs to the next hard write; level and pitch writes ride inside it
        end = min(pos + _MAX_SPAN, n_samples)
        while True:
            while t_l[i - base] < end and chip.write_soft(t_l[i - base] - pos, r_l[i - base],
                                                          v_l[i - base]):
                i += 1
            if i - base < len(t_l) - 1 or i >= n_writes:
                break
            base, t_l, r_l, v_l = load(i)
        end = min(end, t_l[i - base])
        yield chip.generate(end - pos)
        if progress is not None:
            progress(end - pos)
        pos = end
