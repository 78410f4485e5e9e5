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

Registers are constant between writes, so :meth:`Chip.generate` renders a
whole span of samples with array operations over time; only operators with
feedback (whose input is their own previous outputs) step sample by sample,
vectorised over every such operator at once.  :mod:`wav2vgm.opl3.voices`
reuses the operator blocks to render thousands of independent voices at once.
"""

from __future__ import annotations

import numpy as np

from . import registers as R
from .tables import EXP, KSL_SHIFT, KSL_TOP, MULT_X2, EG_INCSTEP, WAVE_LEVEL, WAVE_NEG

__all__ = ["Chip", "render_writes", "operator_output", "phase_increment",
           "feedback_operator", "lfo_tremolo", "vibrato_offset"]

ATTACK, DECAY, SUSTAIN, RELEASE = 0, 1, 2, 3
KEY_NORMAL, KEY_DRUM = 1, 2
CH_2OP, CH_4OP, CH_4OP2, CH_DRUM = 0, 1, 2, 3

MOD_ZERO = -1      # slot modulation input: nothing
MOD_FEEDBACK = -2  # slot modulation input: its own feedback

_MAX_SPAN = 4096   # samples rendered per internal span (bounds memory)

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
    idx = (np.asarray(ws, dtype=np.int32) << 10) | (np.asarray(phase) & 0x3FF).astype(np.int32)
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

_DELAY_A = np.where(np.arange(36) < 15, 0, 1)   # Nuked mixes output A after slot 14
_DELAY_B = np.where(np.arange(36) < 33, 1, 2)   # ... and output B one sample later, after slot 32


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
        self.ch_fnum = np.zeros(18, np.int64)
        self.ch_block = np.zeros(18, np.int64)
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
        self.mult, self.tl, self.ksl, self.ar, self.dr = z(), z(), z(), z(), z()
        self.sl, self.rr, self.ws, self.am, self.vib = z(), z(), z(), z(), z()
        self.egt, self.ksr, self.key, self.eg_ksl = z(), z(), z(), z()
        self.eg_rout = np.full(36, 0x1FF, np.int64)
        self.eg_gen = np.full(36, RELEASE, np.int64)
        self.pg_phase = z()
        self.mod_src = np.full(36, MOD_ZERO, np.int64)
        self.hist = np.zeros((36, 2), np.int32)        # out[n-1], out[n-2] per slot
        self.rm_tc_bits = (0, 0)                        # TC phase bits 3 and 5 of the last sample
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

    def _key(self, ch: int, on: bool) -> None:
        slots = list(self._channel_slots(ch))
        if self.newm:
            if self.ch_type[ch] == CH_4OP:
                slots += list(self._channel_slots(int(self.pair[ch])))
            elif self.ch_type[ch] not in (CH_2OP, CH_DRUM):
                return
        for s in slots:
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
        """Write ``value`` (0-255) to register ``reg`` (0x000-0x1FF)."""
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
        """Render ``n_samples`` native samples; returns (n_samples, 2) int16 (A, B)."""
        n_samples = int(n_samples)
        out = np.empty((n_samples, 2), np.int16)
        done = 0
        while done < n_samples:
            n = min(_MAX_SPAN, n_samples - done)
            out[done:done + n] = self._span(n)
            done += n
        return out

    def _span(self, n: int) -> np.ndarray:
        k0 = self.sample
        k = np.arange(k0, k0 + n, dtype=np.int64)
        clock = _eg_clock(k0, n)
        trem = lfo_tremolo(k, deep=self.dam)

        # envelope generator -> attenuation per slot and sample
        eg_start = np.empty((36, n), np.int64)
        reset_at = np.full(36, -1, np.int64)
        for s in range(36):
            reset_at[s] = self._envelope(s, n, clock, eg_start[s])
        ch = R.SLOT_CHANNEL
        ksl_term = self.eg_ksl >> KSL_SHIFT[self.ksl]
        eg_out = eg_start + (self.tl << 2)[:, None] + ksl_term[:, None]
        eg_out += np.where(self.am[:, None] > 0, trem[None, :], 0)
        np.minimum(eg_out, 0x1FF, out=eg_out)

        # phase generator
        fnum = self.ch_fnum[ch][:, None]
        if self.vib.any():
            fnum = fnum + np.where(self.vib[:, None] > 0,
                                   vibrato_offset(k[None, :], fnum, deep=self.dvb), 0)
        inc = phase_increment(fnum, self.ch_block[ch][:, None], self.mult[:, None])
        inc = np.broadcast_to(inc, (36, n))
        csum = np.cumsum(inc, axis=1)
        before = np.concatenate([np.zeros((36, 1), np.int64), csum[:, :-1]], axis=1)
        acc_before = self.pg_phase[:, None] + before
        for s in np.flatnonzero(reset_at >= 0):
            r = reset_at[s]
            acc_before[s, r + 1:] = before[s, r + 1:] - before[s, r]
            self.pg_phase[s] = (csum[s, -1] - before[s, r]) & 0x7FFFF
        keep = reset_at < 0
        self.pg_phase[keep] = (self.pg_phase[keep] + csum[keep, -1]) & 0x7FFFF
        phase = (acc_before >> 9) & 0x3FF
        if self.rhy & 0x20:
            self._rhythm_phases(phase, k)

        # operators, in slot order (every modulator has a lower slot number)
        out = np.empty((36, n), np.int32)
        fb_slots = [s for s in range(36) if self.mod_src[s] == MOD_FEEDBACK
                    and self.ch_fb[ch[s]] > 0]
        loud = [s for s in fb_slots if eg_out[s].min() < 384]
        if loud:  # the loop costs the same for every operator: take the quiet ones too
            loud = fb_slots
            idx = np.array(loud)
            env = eg_out[idx]
            if (env == env[:, :1]).all():
                env = env[:, :1]
            hist = self.hist[idx].copy()
            out[idx] = feedback_operator(phase[idx], self.ws[idx], env, self.ch_fb[ch[idx]], hist)
        loud_set = set(loud)
        for s in range(36):
            if s in loud_set:
                continue
            src = self.mod_src[s]
            if src >= 0:
                out[s] = operator_output(phase[s] + out[src], self.ws[s], eg_out[s])
            else:  # no modulation, or the feedback of a silent operator (taken as 0)
                out[s] = operator_output(phase[s], self.ws[s], eg_out[s])

        # mixer with Nuked's delays: A sees slots >= 15 one sample late, B one/two late
        ext = np.concatenate([self.hist[:, ::-1], out], axis=1)  # out[n-2], out[n-1], out...
        val_a = ext[np.arange(36)[:, None], 2 - _DELAY_A[:, None] + np.arange(n)[None, :]]
        val_b = ext[np.arange(36)[:, None], 2 - _DELAY_B[:, None] + np.arange(n)[None, :]]
        stereo = np.empty((n, 2), np.int16)
        zero_row = np.zeros((1, n), np.int32)
        for j, (val, mask) in enumerate(((val_a, self.ch_cha), (val_b, self.ch_chb))):
            val = np.concatenate([val, zero_row])
            acc = val[self.ch_out].sum(axis=1)                   # (18, n)
            acc = ((acc + 0x8000) & 0xFFFF) - 0x8000             # (int16_t) per channel
            mix = acc[mask].sum(axis=0)
            stereo[:, j] = np.clip(mix, -32768, 32767)
        self.hist[:, 0] = out[:, -1]
        self.hist[:, 1] = out[:, -2] if n >= 2 else ext[:, 1]
        self.sample += n
        return stereo

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


def render_writes(times, regs, values, *, n_samples: int, write_spacing: int = 2,
                  chip: Chip | None = None) -> np.ndarray:
    """Render timed register writes to (n_samples, 2) int16 at the native rate.

    ``times`` are native-sample times (sorted).  ``write_spacing=2`` models
    Nuked's buffered writes (``OPL3_WriteRegBuffered``, used by AdPlug and
    libvgm): each write lands at least 2 samples after the previous one and
    takes effect one sample later; ``0`` applies each write at its time.
    """
    chip = chip or Chip()
    times = np.asarray(times, dtype=np.int64)
    if write_spacing:
        applied = np.empty_like(times)
        last = -(1 << 40)
        for i, t in enumerate(times.tolist()):
            last = max(last + write_spacing, t)
            applied[i] = last + 1
        times = applied
    out = np.empty((int(n_samples), 2), np.int16)
    pos = 0
    i = 0
    n_writes = len(times)
    times_l = times.tolist()
    regs_l = np.asarray(regs).tolist()
    values_l = np.asarray(values).tolist()
    while pos < n_samples:
        nxt = times_l[i] if i < n_writes else n_samples
        nxt = min(max(nxt, pos), n_samples)
        if nxt > pos:
            out[pos:nxt] = chip.generate(nxt - pos)
            pos = nxt
        while i < n_writes and times_l[i] <= pos:
            chip.write(regs_l[i], values_l[i])
            i += 1
        if i >= n_writes and pos < n_samples:
            out[pos:] = chip.generate(n_samples - pos)
            pos = n_samples
    return out
