"""Short register-write scenarios that exercise every part of the OPL3.

Each case is a list of ``(time_vgm_samples, register, value)`` writes plus a
length; the accuracy tests render them with our emulator and with the
reference player (adplay + Nuked OPL3) and compare.  ``exact=True`` marks
single-voice sustained tones (no LFO, feedback <= 4) that must match the
reference sample for sample once the start is aligned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wav2vgm.opl3 import registers as R

START = 64          # VGM samples between the init writes and the first key-on
SECOND = 44100


@dataclass
class Case:
    name: str
    writes: list = field(default_factory=list)
    length: int = SECOND // 2
    exact: bool = False

    def at(self, t: int, reg: int, value: int) -> "Case":
        self.writes.append((int(t), int(reg), int(value)))
        return self


def _init(case: Case, *, four_op: int = 0, rhythm: int = 0) -> Case:
    case.at(0, R.REG_NEW, 1).at(0, R.REG_4OP, four_op).at(0, R.REG_RHYTHM, rhythm)
    return case


def _op(case: Case, t: int, channel: int, op: int, o: R.Operator) -> None:
    for base, value in zip(R.OPERATOR_BASES, o.register_bytes()):
        case.at(t, R.operator_register(base, channel, op), value)


def _note(case: Case, t: int, channel: int, f_hz: float, *, key: bool = True,
          fb: int = 0, cnt: int = 0, outputs: int = R.OUT_STEREO, mult: int = 1) -> None:
    fnum, block = R.hz_to_fnum(f_hz, mult=mult)
    case.at(t, R.channel_register(R.CH_OUT_FB_CNT, channel), R.c0_value(fb, cnt, outputs))
    case.at(t, R.channel_register(R.CH_FNUM_LO, channel), fnum & 0xFF)
    case.at(t, R.channel_register(R.CH_KEY_BLOCK_FNUM_HI, channel), R.b0_value(fnum, block, key))


def _key_off(case: Case, t: int, channel: int, f_hz: float) -> None:
    fnum, block = R.hz_to_fnum(f_hz)
    case.at(t, R.channel_register(R.CH_KEY_BLOCK_FNUM_HI, channel), R.b0_value(fnum, block, False))


SUSTAIN = dict(ar=15, dr=0, sl=0, rr=8, egt=True)
SILENT = R.Operator(tl=63, ar=0, dr=0, sl=0, rr=15, egt=True)


def _tone(name, *, ws=0, fb=0, cnt=1, mod=None, car_tl=0, f_hz=440.0, channel=0,
          exact=False, car_mult=1, outputs=R.OUT_STEREO) -> Case:
    case = _init(Case(name, exact=exact))
    _op(case, 0, channel, 0, mod if mod is not None else SILENT)
    _op(case, 0, channel, 1, R.Operator(mult=car_mult, tl=car_tl, ws=ws, **SUSTAIN))
    _note(case, START, channel, f_hz, fb=fb, cnt=cnt, outputs=outputs)
    return case


def all_cases() -> list[Case]:
    cases: list[Case] = []
    # every waveform, a plain sustained tone
    for ws in range(8):
        cases.append(_tone(f"waveform-{ws}", ws=ws, exact=True))
    # feedback 0-7 on an audible op1 (additive so op1 is heard)
    for fb in range(8):
        mod = R.Operator(tl=0, ws=0, **SUSTAIN)
        cases.append(_tone(f"feedback-{fb}", fb=fb, cnt=1, mod=mod, car_tl=63, f_hz=220.0,
                           exact=fb <= 4))
    # FM ratios (CNT=0)
    for mult, tl in ((1, 20), (2, 16), (3, 24), (7, 30)):
        mod = R.Operator(mult=mult, tl=tl, **SUSTAIN)
        cases.append(_tone(f"fm-ratio-{mult}", cnt=0, mod=mod, f_hz=330.0, exact=True))
    # both 2-op connections with a mild feedback, other bank
    cases.append(_tone("bank1-fm", cnt=0, mod=R.Operator(mult=2, tl=18, **SUSTAIN), channel=13,
                       fb=2, exact=True))
    cases.append(_tone("bank1-additive", cnt=1, mod=R.Operator(mult=3, tl=6, **SUSTAIN),
                       channel=17, exact=True))
    # a partial above 6.2 kHz through the multiplier
    cases.append(_tone("high-partial", f_hz=8000.0, car_mult=14, exact=True))
    # a band timbre: carrier at 15x the base pitch, a loud modulator at 0.5x (a dense comb)
    cases.append(_tone("band-comb", cnt=0, mod=R.Operator(mult=0, tl=4, **SUSTAIN), f_hz=300.0,
                       car_mult=15, exact=True))
    # the four 4-op algorithms (pair channel 1 + 4)
    for alg in range(4):
        case = _init(Case(f"four-op-alg-{alg}"), four_op=0b000010)
        ops = [R.Operator(mult=1, tl=24, **SUSTAIN), R.Operator(mult=2, tl=20, **SUSTAIN),
               R.Operator(mult=1, tl=16, **SUSTAIN), R.Operator(mult=1, tl=0, **SUSTAIN)]
        _op(case, 0, 1, 0, ops[0]); _op(case, 0, 1, 1, ops[1])
        _op(case, 0, 4, 0, ops[2]); _op(case, 0, 4, 1, ops[3])
        case.at(0, R.channel_register(R.CH_OUT_FB_CNT, 4), R.c0_value(0, alg & 1))
        _note(case, START, 1, 261.6, fb=3, cnt=alg >> 1)
        cases.append(case)
    # all 18 channels at once, a chord over both banks
    case = _init(Case("eighteen-channels", length=SECOND // 2))
    for ch in range(18):
        _op(case, 0, ch, 0, R.Operator(mult=1 + ch % 3, tl=30, **SUSTAIN))
        _op(case, 0, ch, 1, R.Operator(mult=1, tl=12, **SUSTAIN))
        _note(case, START, ch, 110.0 * 2 ** (ch / 7), fb=ch % 4, cnt=0)
    cases.append(case)
    # percussive envelope with decay, sustain level and release after key-off
    case = _init(Case("percussive", length=SECOND))
    _op(case, 0, 2, 0, R.Operator(mult=1, tl=20, ar=12, dr=6, sl=4, rr=6, egt=False))
    _op(case, 0, 2, 1, R.Operator(mult=1, tl=0, ar=13, dr=5, sl=3, rr=5, egt=False))
    _note(case, START, 2, 196.0, fb=1, cnt=0)
    cases.append(case)
    # sustained note, key-off, release; then a re-key
    case = _init(Case("release-rekey", length=SECOND))
    _op(case, 0, 0, 0, SILENT)
    _op(case, 0, 0, 1, R.Operator(tl=0, ar=10, dr=4, sl=2, rr=7, egt=True))
    _note(case, START, 0, 523.3, cnt=1)
    _key_off(case, START + 15000, 0, 523.3)
    _note(case, START + 30000, 0, 392.0, cnt=1)
    cases.append(case)
    # slow attack
    case = _init(Case("slow-attack", length=SECOND))
    _op(case, 0, 5, 0, SILENT)
    _op(case, 0, 5, 1, R.Operator(tl=0, ar=6, dr=0, sl=0, rr=8, egt=True))
    _note(case, START, 5, 300.0, cnt=1)
    cases.append(case)
    # KSL and KSR at a high pitch
    case = _init(Case("ksl-ksr"))
    _op(case, 0, 0, 0, R.Operator(mult=1, tl=10, ksl=2, **SUSTAIN))
    _op(case, 0, 0, 1, R.Operator(mult=1, tl=0, ksl=3, ar=15, dr=7, sl=5, rr=8, egt=True,
                                  ksr=True))
    _note(case, START, 0, 2000.0, cnt=0)
    cases.append(case)
    # tremolo and vibrato, deep and shallow
    for depth in (0xC0, 0x00):
        case = _init(Case(f"lfo-{depth:02x}", length=SECOND), rhythm=depth)
        _op(case, 0, 3, 0, SILENT)
        _op(case, 0, 3, 1, R.Operator(tl=0, am=True, vib=True, **SUSTAIN))
        _note(case, START, 3, 880.0, cnt=1)
        cases.append(case)
    # F-number glide without key-off (TL changes too)
    case = _init(Case("glide", length=SECOND))
    _op(case, 0, 0, 0, SILENT)
    _op(case, 0, 0, 1, R.Operator(tl=0, **SUSTAIN))
    _note(case, START, 0, 200.0, cnt=1)
    for i in range(1, 50):
        t = START + i * 735
        f = 200.0 * 2 ** (i / 24)
        fnum, block = R.hz_to_fnum(f)
        case.at(t, R.operator_register(R.OP_KSL_TL, 0, 1), i % 20)
        case.at(t, R.channel_register(R.CH_FNUM_LO, 0), fnum & 0xFF)
        case.at(t, R.channel_register(R.CH_KEY_BLOCK_FNUM_HI, 0), R.b0_value(fnum, block, True))
    cases.append(case)
    # left/right output bits
    cases.append(_tone("left-only", outputs=R.OUT_LEFT, exact=True))
    cases.append(_tone("right-only", outputs=R.OUT_RIGHT, channel=10, exact=True))
    # rhythm mode: bass drum, snare, hi-hat, tom, cymbal
    case = _init(Case("rhythm", length=SECOND))
    for ch in (6, 7, 8):
        _op(case, 0, ch, 0, R.Operator(mult=1, tl=4, ar=15, dr=6, sl=8, rr=6, egt=False))
        _op(case, 0, ch, 1, R.Operator(mult=1, tl=0, ar=15, dr=5, sl=7, rr=6, egt=False))
        _note(case, 0, ch, 100.0 * (ch - 5), key=False, fb=2)
    case.at(START, R.REG_RHYTHM, 0x20 | 0x1F)
    case.at(START + 22050, R.REG_RHYTHM, 0x20)
    case.at(START + 22100, R.REG_RHYTHM, 0x20 | 0x0A)
    cases.append(case)
    return cases
