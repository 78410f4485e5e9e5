"""The YMF262 (OPL3) register map: the one owner of the chip's 512 register bytes.

Everything that reads or writes OPL3 registers -- the emulator, the converter,
the VGM tools and the tests -- goes through the names and helpers here.

Register space: bank 0 (VGM port 0, addresses 0x000-0x0FF) and bank 1 (port 1,
0x100-0x1FF).  Channel registers in bank 1 drive channels 9-17 exactly as bank 0
drives channels 0-8.  Bit map::

    addr        bit7  bit6  bit5  bit4  bit3  bit2  bit1  bit0
    0x001       test register (ignored in OPL3 mode)
    0x002-004   timers (no effect on sound)
    0x008       --    NTS   --    --    --    --    --    --
    0x20+op     AM    VIB   EGT   KSR   MULT---------------
    0x40+op     KSL-------  TL---------------------------------
    0x60+op     AR----------------------  DR-------------------
    0x80+op     SL----------------------  RR-------------------
    0xA0+ch     FNUM bits 7-0
    0xB0+ch     --    --    KEYON BLOCK------------  FNUM 9-8--
    0x0BD       DAM   DVB   RHY   BD    SD    TOM   TC    HH      (bank 0 only)
    0xC0+ch     CHD   CHC   CHB   CHA   FB-----------------  CNT
    0xE0+op     --    --    --    --    --    WS-----------------
    0x104       --    --    4-op enable for pairs 11+14 10+13 9+12 2+5 1+4 0+3
    0x105       --    --    --    --    --    --    NEW2  NEW

``op`` is an operator offset (0x00-0x05, 0x08-0x0D, 0x10-0x15) and ``ch`` a
channel index 0-8 within the bank.  CHA is the left and CHB the right output on
PC cards; CHC/CHD are dropped by every player.

Slots: the emulator numbers the 36 operators ("slots") as Nuked-OPL3 does,
``slot = 18*bank + off - 2*(off // 8)``; a 2-op channel ``c`` of a bank has its
first operator at ``off1 = 8*(c // 3) + c % 3`` and its second at ``off1 + 3``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError
from .tables import KSL_SHIFT, KSL_TOP

# --------------------------------------------------------------------------
# Chip constants
# --------------------------------------------------------------------------
CLOCK_HZ = 14_318_180
"""Master clock of PC OPL3 cards (4 x NTSC colour burst); the VGM header value."""
NATIVE_RATE_HZ = CLOCK_HZ / 288
"""One output sample per 288 master clocks: 49715.90 Hz."""
NATIVE_RATE_INT = 49716
"""The native rate rounded as Nuked-OPL3 and AdPlug use it for output files."""

N_CHANNELS = 18
N_SLOTS = 36
N_REGISTERS = 0x200

# Global registers
REG_TEST = 0x001
REG_NTS = 0x008
REG_RHYTHM = 0x0BD
REG_4OP = 0x104
REG_NEW = 0x105

# Per-operator register bases (add the operator offset, and 0x100 for bank 1)
OP_AM_VIB_EGT_KSR_MULT = 0x20
OP_KSL_TL = 0x40
OP_AR_DR = 0x60
OP_SL_RR = 0x80
OP_WS = 0xE0
OPERATOR_BASES = (OP_AM_VIB_EGT_KSR_MULT, OP_KSL_TL, OP_AR_DR, OP_SL_RR, OP_WS)

# Per-channel register bases (add the channel index 0-8, and 0x100 for bank 1)
CH_FNUM_LO = 0xA0
CH_KEY_BLOCK_FNUM_HI = 0xB0
CH_OUT_FB_CNT = 0xC0

# Output bits of 0xC0
OUT_LEFT = 0x10   # CHA
OUT_RIGHT = 0x20  # CHB
OUT_C = 0x40
OUT_D = 0x80
OUT_STEREO = OUT_LEFT | OUT_RIGHT

OPERATOR_OFFSETS = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
                    0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D,
                    0x10, 0x11, 0x12, 0x13, 0x14, 0x15)
"""The 18 valid operator offsets of a bank, in slot order."""

MULT_X2 = (1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 20, 24, 24, 30, 30)
"""Twice the frequency multiplier of MULT register values 0-15 (x0.5 ... x15)."""
MULT_FACTORS = tuple(m / 2 for m in MULT_X2)
"""Frequency multiplier of MULT register values 0-15."""

FOUR_OP_PAIRS = ((0, 3), (1, 4), (2, 5), (9, 12), (10, 13), (11, 14))
"""(primary, secondary) channels joined by bits 0-5 of 0x104."""

KSL_DB_PER_OCTAVE = {0: 0.0, 1: 3.0, 2: 1.5, 3: 6.0}
"""Key-scale-level register codes and their nominal slopes."""
KSL_CODES_BY_DEPTH = (0, 2, 1, 3)
"""KSL codes from no key scaling to the most (the term shifted right by 8 (off), 2, 1, 0)."""

TL_STEP_DB = 20 * math.log10(2) * 4 / 32  # 4 EG units of 6.02/32 dB: 0.7526 dB
"""Attenuation of one TL step in dB."""
FULL_SCALE_OPERATOR = 4084
"""Peak output of one operator at zero attenuation (about -18 dBFS of int16)."""

def ksl_term(fnum, block) -> np.ndarray:
    """The key-scale attenuation of channel pitches at KSL code 3 (6 dB/octave), in EG units.

    ``max(0, KSLTOP[fnum >> 6] * 4 - (8 - block) * 32)`` (0-224 units of
    0.19 dB; :func:`ksl_attenuation` gives what each code takes of it), the
    same on both operators of a channel whatever their MULT: for the pitches
    :func:`hz_to_fnum` writes, 0 dB at 50 Hz, 6 at 100 Hz, 20 at 440 Hz, 32
    at 2 kHz and 36-42 dB above 3 kHz.  The chip adds it to TL and envelope
    continuously, so it follows F-number and block writes at once.
    """
    index = np.array(block, np.intp)                # a copy, shifted in place
    index <<= 4
    index |= np.asarray(fnum) >> 6
    return _KSL_TERMS[index]


# ksl_term by block (0-7) * 16 + the F-number's top four bits: a look-up, since the
# formula's int64 temporaries take twice as long over a frame table (1.4 against 0.6-0.7
# ms for a chunk of 4092 updates)
_KSL_TERMS = np.maximum((KSL_TOP.astype(np.int64) << 2)[None, :]
                        - ((8 - np.arange(8, dtype=np.int64)) << 5)[:, None], 0).ravel()


def ksl_attenuation(term, code) -> np.ndarray:
    """EG units (4 per TL step) KSL ``code`` (0-3) adds, given :func:`ksl_term`: none, half,
    a quarter or all of it."""
    return np.asarray(term, np.int64) >> KSL_SHIFT[np.asarray(code, np.int64)]


WAVEFORM_NAMES = ("sine", "half-sine", "abs-sine", "quarter-pulse",
                  "alternating-sine", "camel-sine", "square", "log-saw")


# --------------------------------------------------------------------------
# Slot / channel map
# --------------------------------------------------------------------------
def operator_offset(channel: int, op: int) -> int:
    """Register offset (0x00-0x15) of operator ``op`` (0 or 1) of a 2-op channel 0-17."""
    if not 0 <= channel < N_CHANNELS:
        raise ParameterError(f"channel must be 0-17, got {channel!r}")
    if op not in (0, 1):
        raise ParameterError(f"operator must be 0 or 1, got {op!r}")
    c = channel % 9
    return 8 * (c // 3) + c % 3 + 3 * op


def operator_register(base: int, channel: int, op: int) -> int:
    """Full register address (0x000-0x1FF) of an operator register of a 2-op channel."""
    return (0x100 if channel >= 9 else 0) + base + operator_offset(channel, op)


def channel_register(base: int, channel: int) -> int:
    """Full register address of channel register ``base`` (0xA0, 0xB0, 0xC0)."""
    if not 0 <= channel < N_CHANNELS:
        raise ParameterError(f"channel must be 0-17, got {channel!r}")
    return (0x100 if channel >= 9 else 0) + base + channel % 9


def slot_index(bank: int, offset: int) -> int:
    """Nuked-OPL3 slot number 0-35 of an operator offset, or -1 for the unused offsets."""
    if offset not in OPERATOR_OFFSETS:
        return -1
    return 18 * bank + offset - 2 * (offset // 8)


def channel_slots(channel: int) -> tuple[int, int]:
    """Slot numbers (op1, op2) of 2-op channel 0-17."""
    bank = channel // 9
    return (slot_index(bank, operator_offset(channel, 0)),
            slot_index(bank, operator_offset(channel, 1)))


SLOT_CHANNEL = np.zeros(N_SLOTS, dtype=np.int64)
"""Channel 0-17 owning each slot."""
SLOT_IS_OP2 = np.zeros(N_SLOTS, dtype=bool)
"""True for the second operator of its 2-op channel."""
CHANNEL_SLOTS = np.zeros((N_CHANNELS, 2), dtype=np.int64)
"""Slots (op1, op2) of each channel."""
for _ch in range(N_CHANNELS):
    _s1, _s2 = channel_slots(_ch)
    CHANNEL_SLOTS[_ch] = (_s1, _s2)
    SLOT_CHANNEL[_s1] = SLOT_CHANNEL[_s2] = _ch
    SLOT_IS_OP2[_s2] = True
SLOT_REGISTER_OFFSET = np.array(
    [(0x100 if s >= 18 else 0) + OPERATOR_OFFSETS[s % 18] for s in range(N_SLOTS)],
    dtype=np.int64)
"""Register offset (with bank) of each slot: add an operator base to address it."""


# --------------------------------------------------------------------------
# Frequency and level math
# --------------------------------------------------------------------------
def fnum_to_hz(fnum, block, mult=1, *, rate_hz: float = NATIVE_RATE_HZ):
    """Frequency in Hz of an operator: ``fnum * 2**block * MULT * fs / 2**20``.

    ``mult`` is the MULT *register value* (0-15); block 0 loses the F-number's
    lowest bit exactly as the phase generator does.  Works on arrays.
    """
    fnum = np.asarray(fnum, dtype=np.int64)
    block = np.asarray(block, dtype=np.int64)
    m2 = np.asarray(MULT_X2)[np.asarray(mult, dtype=np.int64)]
    inc = (((fnum << block) >> 1) * m2) >> 1  # phase increment per native sample
    hz = inc * rate_hz / 2.0 ** 19
    return float(hz) if np.ndim(hz) == 0 else hz


def hz_to_fnum(f_hz, *, mult: int = 1, rate_hz: float = NATIVE_RATE_HZ):
    """Best (fnum, block) for frequency ``f_hz`` with MULT register value ``mult``.

    Picks the smallest block whose F-number range holds the frequency (the
    finest resolution), rounds the F-number, and clamps to the chip's range
    (fnum 0-1023, block 0-7).  Works on arrays; returns int64 arrays (or ints).
    """
    f = np.asarray(f_hz, dtype=np.float64)
    m = MULT_FACTORS[mult] if np.ndim(mult) == 0 else np.asarray(MULT_FACTORS)[mult]
    base = np.maximum(f, 0.0) / m  # frequency with MULT = 1
    # fnum = base * 2**(20-block) / fs; want the smallest block with fnum <= 1023
    ratio = base * 2.0 ** 20 / rate_hz
    with np.errstate(divide="ignore"):
        block = np.ceil(np.log2(np.maximum(ratio, 1e-12) / 1023.5)).astype(np.int64)
    block = np.clip(block, 1, 7)  # block 0 halves the resolution: never better than 1
    fnum = np.rint(ratio / 2.0 ** block).astype(np.int64)
    over = fnum > 1023
    fnum = np.where(over, 1023, fnum)
    fnum = np.clip(fnum, 0, 1023)
    if np.ndim(fnum) == 0:
        return int(fnum), int(block)
    return fnum, block


MAX_FNUM_HZ = fnum_to_hz(1023, 7, 1)
"""Highest frequency reachable with MULT = 1 (about 6.2 kHz)."""

_CARRIER_MULTS = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14])   # register values, distinct factors


def carrier_mult(f_hz):
    """MULT register value for a partial at ``f_hz``: 1 up to 6.1 kHz, above it the
    smallest multiplier that brings the base frequency into F-number range (the
    smallest keeps the finest frequency steps).  Works on arrays.
    """
    f = np.asarray(f_hz, float).reshape(-1)
    factors = np.asarray(MULT_FACTORS)[_CARRIER_MULTS]
    fits = f[:, None] / factors[None, :] < MAX_FNUM_HZ * 0.985
    mult = np.where(fits.any(axis=1), _CARRIER_MULTS[np.argmax(fits, axis=1)], 14)
    return int(mult[0]) if np.ndim(f_hz) == 0 else mult.reshape(np.shape(f_hz))


def best_frequency_setting(f_hz: float, *, rate_hz: float = NATIVE_RATE_HZ) -> tuple[int, int, int]:
    """(fnum, block, mult) that reaches ``f_hz``: MULT=1 below 6.2 kHz, above it the
    multipliers 2-15 reach every partial up to the Nyquist frequency."""
    mult = carrier_mult(f_hz)
    fnum, block = hz_to_fnum(f_hz, mult=mult, rate_hz=rate_hz)
    return fnum, block, mult


def tl_to_db(tl):
    """Attenuation in dB of a TL value (0.7526 dB per step)."""
    return np.asarray(tl) * TL_STEP_DB


def db_to_tl(attenuation_db):
    """Nearest TL (0-63) for an attenuation in dB (rounding in the log domain)."""
    tl = np.rint(np.asarray(attenuation_db, dtype=np.float64) / TL_STEP_DB)
    tl = np.clip(tl, 0, 63).astype(np.int64)
    return int(tl) if tl.ndim == 0 else tl


# --------------------------------------------------------------------------
# Field encoding
# --------------------------------------------------------------------------
def _check(name: str, value: int, hi: int) -> int:
    value = int(value)
    if not 0 <= value <= hi:
        raise ParameterError(f"{name} must be 0-{hi}, got {value!r}")
    return value


@dataclass(frozen=True)
class Operator:
    """The per-operator fields of registers 0x20, 0x40, 0x60, 0x80 and 0xE0."""

    mult: int = 1
    tl: int = 63
    ar: int = 15
    dr: int = 0
    sl: int = 0
    rr: int = 15
    ws: int = 0
    ksl: int = 0
    am: bool = False
    vib: bool = False
    egt: bool = True
    ksr: bool = False

    def __post_init__(self):
        for name, hi in (("mult", 15), ("tl", 63), ("ar", 15), ("dr", 15), ("sl", 15),
                         ("rr", 15), ("ws", 7), ("ksl", 3)):
            _check(name, getattr(self, name), hi)

    def register_bytes(self) -> tuple[int, int, int, int, int]:
        """Values of (0x20, 0x40, 0x60, 0x80, 0xE0) for this operator."""
        r20 = (self.am << 7) | (self.vib << 6) | (self.egt << 5) | (self.ksr << 4) | self.mult
        r40 = (self.ksl << 6) | self.tl
        r60 = (self.ar << 4) | self.dr
        r80 = (self.sl << 4) | self.rr
        return (int(r20), int(r40), int(r60), int(r80), int(self.ws))

    @classmethod
    def from_register_bytes(cls, r20: int, r40: int, r60: int, r80: int, re0: int) -> "Operator":
        return cls(mult=r20 & 15, ksr=bool(r20 & 0x10), egt=bool(r20 & 0x20),
                   vib=bool(r20 & 0x40), am=bool(r20 & 0x80),
                   tl=r40 & 63, ksl=r40 >> 6, ar=r60 >> 4, dr=r60 & 15,
                   sl=r80 >> 4, rr=r80 & 15, ws=re0 & 7)


SILENT_OPERATOR = Operator(tl=63, ar=0, dr=0, sl=0, rr=15, egt=True)
"""An operator that never attacks (AR=0): silent even while keyed."""


def b0_value(fnum: int, block: int, key: bool) -> int:
    """Value of register 0xB0+ch: key-on bit, block and the F-number's two high bits."""
    return (int(bool(key)) << 5) | (_check("block", block, 7) << 2) | (_check("fnum", fnum, 1023) >> 8)


def c0_value(fb: int, cnt: int, outputs: int = OUT_STEREO) -> int:
    """Value of register 0xC0+ch: output bits, feedback and connection."""
    return (outputs & 0xF0) | (_check("feedback", fb, 7) << 1) | _check("connection", cnt, 1)


# --------------------------------------------------------------------------
# Register frames and the writes between them
# --------------------------------------------------------------------------
_ORDER_GLOBAL = (REG_NEW, REG_4OP, REG_NTS, REG_RHYTHM)
_CHANNEL_RANK = 10                     # operator, C0, A0 (20) and B0 (30) registers rank from here


def _write_rank(reg: int) -> int:
    """Rank of a register in the order every emulator accepts (OPL3.md, 'Order that works')."""
    if reg in _ORDER_GLOBAL:
        return _ORDER_GLOBAL.index(reg)
    low = reg & 0xFF
    if 0x20 <= low < 0xA0 or low >= 0xE0 or 0xC0 <= low < 0xC9:
        return _CHANNEL_RANK
    if 0xA0 <= low < 0xA9:
        return 20
    if 0xB0 <= low < 0xB9:
        return 30
    return 5


class RegisterFrame:
    """The full register state the converter wants the chip to hold at one instant.

    A thin wrapper over the 512-byte register image with typed setters for
    operators and channels.  :meth:`writes_from` gives the minimal list of
    writes that takes the chip from another frame to this one, in an order
    every emulator accepts: 0x105, 0x104, 0x08, 0xBD; key-offs of channels
    that stop; then channel by channel operator registers and 0xC0, 0xA0,
    0xB0 with its key-on last (:func:`image_writes`).
    """

    __slots__ = ("image",)

    def __init__(self, image: bytes | bytearray | None = None):
        if image is None:
            self.image = bytearray(N_REGISTERS)
        else:
            if len(image) != N_REGISTERS:
                raise ParameterError(f"a register image has 512 bytes, got {len(image)}")
            self.image = bytearray(image)

    def copy(self) -> "RegisterFrame":
        return RegisterFrame(self.image)

    def __eq__(self, other) -> bool:
        return isinstance(other, RegisterFrame) and self.image == other.image

    def __getitem__(self, reg: int) -> int:
        return self.image[reg]

    def __setitem__(self, reg: int, value: int) -> None:
        if not 0 <= reg < N_REGISTERS:
            raise ParameterError(f"register must be 0x000-0x1FF, got {reg:#x}")
        self.image[reg] = _check("register value", value, 255)

    # -- typed setters -------------------------------------------------------
    def set_operator(self, channel: int, op: int, operator: Operator) -> None:
        """Write the five registers of operator ``op`` (0/1) of 2-op channel ``channel``."""
        for base, value in zip(OPERATOR_BASES, operator.register_bytes()):
            self.image[operator_register(base, channel, op)] = value

    def operator(self, channel: int, op: int) -> Operator:
        return Operator.from_register_bytes(
            *(self.image[operator_register(b, channel, op)] for b in OPERATOR_BASES))

    def set_channel(self, channel: int, *, fnum: int, block: int, key: bool,
                    fb: int = 0, cnt: int = 0, outputs: int = OUT_STEREO) -> None:
        """Set F-number, block, key and the 0xC0 fields of ``channel``."""
        self.image[channel_register(CH_FNUM_LO, channel)] = _check("fnum", fnum, 1023) & 0xFF
        self.image[channel_register(CH_KEY_BLOCK_FNUM_HI, channel)] = b0_value(fnum, block, key)
        self.image[channel_register(CH_OUT_FB_CNT, channel)] = c0_value(fb, cnt, outputs)

    def set_key(self, channel: int, key: bool) -> None:
        reg = channel_register(CH_KEY_BLOCK_FNUM_HI, channel)
        self.image[reg] = (self.image[reg] & 0x1F) | (int(bool(key)) << 5)

    def key(self, channel: int) -> bool:
        return bool(self.image[channel_register(CH_KEY_BLOCK_FNUM_HI, channel)] & 0x20)

    def fnum_block(self, channel: int) -> tuple[int, int]:
        lo = self.image[channel_register(CH_FNUM_LO, channel)]
        hi = self.image[channel_register(CH_KEY_BLOCK_FNUM_HI, channel)]
        return ((hi & 3) << 8) | lo, (hi >> 2) & 7

    def set_four_op(self, mask: int) -> None:
        self.image[REG_4OP] = _check("4-op mask", mask, 63)

    def set_opl3_mode(self, on: bool = True) -> None:
        self.image[REG_NEW] = int(bool(on))

    # -- diff -------------------------------------------------------------------
    def writes_from(self, previous: "RegisterFrame | None") -> list[tuple[int, int]]:
        """Minimal ``(register, value)`` writes taking the chip from ``previous`` to this frame.

        ``previous=None`` means a chip just reset (all registers 0).  Channels
        whose key goes from on to off are keyed off first (keeping their old
        pitch), so a release never sounds with the new frame's settings.
        """
        prev = None if previous is None else np.frombuffer(bytes(previous.image), np.uint8)
        _, regs, values = image_writes(np.frombuffer(bytes(self.image), np.uint8)[None, :],
                                       previous=prev)
        return list(zip(regs.tolist(), values.tolist()))


# --------------------------------------------------------------------------
# Vectorised register frames: many frames at once (the converter's path)
# --------------------------------------------------------------------------
@dataclass
class ChannelFrames:
    """Per-frame settings of the 18 two-operator channels, arrays of shape (n_frames, 18).

    ``key`` is bool; every other field is an integer register field:
    ``fnum`` (0-1023), ``block`` (0-7), ``fb`` (0-7), ``cnt`` (0/1),
    ``mult1``/``mult2`` (0-15), ``tl1``/``tl2`` (0-63), ``ws1``/``ws2`` (0-7),
    ``outputs`` (0xC0 output bits, default left+right), ``ksl1``/``ksl2``
    (KSL codes 0-3, default 0).  ``in_phase`` (bool, optional) is chip state,
    not a register: operator 1 has run at operator 2's MULT since the
    channel's last key-on, so the two play in phase.  Operators use
    AR=15, DR=0, SL=0, EGT=1 (constant level while keyed) and RR=``rr``
    (default 15: a voice that stops is muted within a few milliseconds).
    """

    fnum: np.ndarray
    block: np.ndarray
    key: np.ndarray
    fb: np.ndarray
    cnt: np.ndarray
    mult1: np.ndarray
    mult2: np.ndarray
    tl1: np.ndarray
    tl2: np.ndarray
    ws1: np.ndarray
    ws2: np.ndarray
    outputs: np.ndarray | None = None
    rr: int = 15
    ksl1: np.ndarray | None = None
    ksl2: np.ndarray | None = None
    in_phase: np.ndarray | None = None

    @classmethod
    def silent(cls, n_frames: int, n_channels: int = N_CHANNELS) -> "ChannelFrames":
        z = lambda: np.zeros((n_frames, n_channels), np.int64)  # noqa: E731
        f = cls(fnum=z(), block=z(), key=np.zeros((n_frames, n_channels), bool), fb=z(),
                cnt=z(), mult1=z() + 1, mult2=z() + 1, tl1=z() + 63, tl2=z() + 63,
                ws1=z(), ws2=z())
        return f

    @property
    def n_frames(self) -> int:
        return int(self.fnum.shape[0])


_OP1_OFFSETS = np.array([operator_offset(c, 0) + (0x100 if c >= 9 else 0) for c in range(N_CHANNELS)])
_OP2_OFFSETS = _OP1_OFFSETS + 3
_CH_OFFSETS = np.array([(0x100 if c >= 9 else 0) + c % 9 for c in range(N_CHANNELS)])
# each channel's 13 registers: its operators' and its C0, A0 and B0
_CHANNEL_REGISTERS = np.array([[base + offs[c] for offs in (_OP1_OFFSETS, _OP2_OFFSETS)
                                for base in OPERATOR_BASES]
                               + [base + _CH_OFFSETS[c]
                                  for base in (CH_OUT_FB_CNT, CH_FNUM_LO, CH_KEY_BLOCK_FNUM_HI)]
                               for c in range(N_CHANNELS)])


def channel_images(frames: ChannelFrames, *, four_op_mask: int = 0, lazy: bool = False,
                   used_before: np.ndarray | None = None) -> np.ndarray:
    """The 512-byte register image of every frame: (n_frames, 512) uint8 (a transposed view).

    ``lazy``: channels never keyed so far (in these frames or, per
    ``used_before`` (n_channels,) bool, earlier) keep their reset value 0.
    """
    n, n_ch = frames.fnum.shape
    # built register by register (each register's frames contiguous), returned as the
    # transposed view: (n_frames, 512), Fortran-ordered, which image_writes reads
    # register by register
    img = np.zeros((N_REGISTERS, n), np.uint8)
    img[REG_NEW] = 1
    img[REG_4OP] = four_op_mask
    ch_off = _CH_OFFSETS[:n_ch]
    outputs = frames.outputs if frames.outputs is not None else np.full((n, n_ch), OUT_STEREO)
    for offs, mult, tl, ws, ksl in (
            (_OP1_OFFSETS[:n_ch], frames.mult1, frames.tl1, frames.ws1, frames.ksl1),
            (_OP2_OFFSETS[:n_ch], frames.mult2, frames.tl2, frames.ws2, frames.ksl2)):
        img[OP_AM_VIB_EGT_KSR_MULT + offs] = (0x20 | mult).T
        img[OP_KSL_TL + offs] = (tl if ksl is None else (ksl << 6) | tl).T
        img[OP_AR_DR + offs] = 0xF0
        img[OP_SL_RR + offs] = np.asarray(frames.rr).T
        img[OP_WS + offs] = ws.T
    img[CH_OUT_FB_CNT + ch_off] = ((outputs & 0xF0) | (frames.fb << 1) | frames.cnt).T
    img[CH_FNUM_LO + ch_off] = (frames.fnum & 0xFF).T
    img[CH_KEY_BLOCK_FNUM_HI + ch_off] = ((frames.key.astype(np.int64) << 5)
                                          | (frames.block << 2) | (frames.fnum >> 8)).T
    if lazy and n:
        # a channel's registers stay at their reset value (0) until it is first
        # keyed, so the first frames do not spend the player's write budget on
        # channels that are still silent
        first = np.where(frames.key.any(axis=0), frames.key.argmax(axis=0), n)
        if used_before is not None:
            first[np.asarray(used_before, bool)[:n_ch]] = 0
        for c in np.flatnonzero(first).tolist():
            img[_CHANNEL_REGISTERS[c], :first[c]] = 0
    return img.T


_RANK = np.array([_write_rank(r) for r in range(N_REGISTERS)])


# each channel register's channel (REGISTER_CHANNEL, 0 elsewhere; CHANNEL_REGISTER marks
# them), and which registers channel_images sets (the globals and every channel's
# operator and channel registers)
CHANNEL_REGISTER = _RANK >= _CHANNEL_RANK
REGISTER_CHANNEL = np.zeros(N_REGISTERS, np.int64)
_SET_BY_IMAGES = np.zeros(N_REGISTERS, bool)
_SET_BY_IMAGES[list(_ORDER_GLOBAL)] = True
REGISTER_CHANNEL[_CHANNEL_REGISTERS] = np.arange(N_CHANNELS)[:, None]
_SET_BY_IMAGES[_CHANNEL_REGISTERS] = True
_KEY_OFF_RANK = 7                      # after the globals, before operator registers
_IS_B0 = np.zeros(N_REGISTERS, bool)
_IS_B0[[b + c for b in (0x0B0, 0x1B0) for c in range(9)]] = True


def unknown_state(image: np.ndarray) -> np.ndarray:
    """A ``previous`` for :func:`image_writes` from which it writes all of ``image`` (512,).

    It differs from ``image`` in every register the converter sets (the
    globals, every channel's operator, C0, A0 and B0 registers) except in
    the B0 key bits.  For a loop point, where the chip holds whatever the end
    of the song left: every register is set again, a channel keyed there and
    here stays keyed (no re-attack), one keyed there but not here is keyed
    off by its B0 write.
    """
    flip = np.where(_SET_BY_IMAGES, np.uint8(0xFF), np.uint8(0))
    flip[_IS_B0] = 0xDF
    return np.asarray(image, np.uint8) ^ flip


def image_writes(images: np.ndarray, *, previous: np.ndarray | None = None, with_keys: bool = False):
    """All register writes between consecutive images: the one diff of the project.

    ``images``: (n_frames, 512) uint8; ``previous`` the image before the first
    frame (default: a chip just reset, all zeros).  Returns ``(frame, reg,
    value)`` int arrays sorted by frame and then in an order every emulator
    accepts: 0x105, 0x104, 0x08, 0xBD; key-offs of channels that stop (with
    their old pitch, so a release never glides); then channel by channel its
    operator registers and 0xC0, 0xA0, and 0xB0 (with its key-on) last.
    ``with_keys``: also return each write's sort key (:func:`write_keys`),
    increasing along the writes.

    Channel by channel, not all operator registers, then all A0s, then all
    B0s: players apply a frame's writes about 2 samples apart (Nuked's write
    buffer), so a channel whose MULT and F-number change together would play
    the wrong frequency from its MULT write to its A0/B0 writes -- tens of
    samples in a busy frame, a phase jump heard as sidebands.  Adjacent, it
    is a few samples (adplay, 23 clips: `model` 2.720 -> 2.664 dB; `sines`
    3.563 -> 3.608, its noise-like clips losing the splatter that filled
    the top bands it has no partials for: galway 6.37 -> 6.83).
    """
    images = np.asarray(images, np.uint8)
    prev = np.zeros(N_REGISTERS, np.uint8) if previous is None else np.asarray(previous, np.uint8)
    n = images.shape[0]
    by_register = images.T                          # channel_images' layout underneath
    # most registers hold one value through a chunk of frames (all but 110-200 of the
    # 512 in the 60 s clip's chunks): only those that change somewhere are diffed
    if n:
        changes = ((by_register.min(axis=1) != by_register.max(axis=1))
                   | (by_register[:, 0] != prev))
    else:
        changes = np.zeros(N_REGISTERS, bool)
    rows = _WRITE_ORDER[changes[_WRITE_ORDER]]      # those registers, in write order
    # each register's frames contiguous, padded to whole 8-byte words
    width = n + (-n % 8)
    now = np.zeros((rows.size, width), np.uint8)
    now[:, :n] = by_register[rows]
    before = np.empty_like(now)
    before.ravel()[1:] = now.ravel()[:-1]           # one contiguous copy, then each
    before[:, :1] = prev[rows, None]                # register's first frame (if any)
    before[:, n:] = 0                               # and its padding
    # the changed 8-byte words first, then the bytes that changed within them (nonzero
    # finds a bool array's True several times faster than an integer array's nonzero
    # elements)
    flips = before.view(np.uint64).ravel()
    flips ^= now.view(np.uint64).ravel()
    word = np.flatnonzero(flips != 0)
    flip_bytes = flips[word].view(np.uint8)
    j = np.flatnonzero(flip_bytes != 0)
    cell = word[j >> 3] * 8 + (j & 7)                       # index into the flattened array
    row, frame = np.divmod(cell, width)                     # sorted by row, then frame
    reg = rows[row]
    new = now.ravel()[cell]
    old = new ^ flip_bytes[j]
    off = np.flatnonzero(_IS_B0[reg] & ((old & 0x20) != 0) & ((new & 0x20) == 0))
    off_value = old[off] & 0x1F
    # a B0 write whose value the early key-off already set is not repeated
    keep = np.ones(cell.size, bool)
    keep[off[new[off] == off_value]] = False
    # the key-offs' place in write order: after the registers that are no channel's
    # (the first ``head`` writes), before every channel register
    head = int(np.searchsorted(row, np.count_nonzero(~CHANNEL_REGISTER[rows])))
    rest = head + np.flatnonzero(keep[head:])
    frame = np.concatenate([frame[:head], frame[off], frame[rest]])
    reg = np.concatenate([reg[:head], reg[off], reg[rest]])
    value = np.concatenate([new[:head], off_value, new[rest]])
    # in write order within each frame: ordering by frame alone (stable) finishes the
    # sort; small integers sort by radix
    order = np.argsort(frame.astype(np.uint16) if n <= 1 << 16 else frame, kind="stable")
    frame, reg, value = frame[order], reg[order], value[order]
    if with_keys:
        key = write_keys(frame, reg)
        early = np.flatnonzero((order >= head) & (order < head + off.size))   # the key-offs
        key[early] = write_keys(frame[early], reg[early], rank=np.full(early.size, _KEY_OFF_RANK))
        return frame, reg, value, key
    return frame, reg, value


def write_keys(frame: np.ndarray, reg: np.ndarray, *, rank: np.ndarray | None = None) -> np.ndarray:
    """The order :func:`image_writes` puts writes in, as one int64 key per write.

    By frame; within a frame the globals and key-offs (``rank`` below
    _CHANNEL_RANK; default: each register's own rank, so no key-off) first,
    then channel by channel (a channel's MULT, A0 and B0 writes adjacent: see
    :func:`image_writes`).  One key (frame, per_channel, channel < 32,
    rank < 32, reg < 512) instead of a five-key lexsort; keys are unique.
    """
    reg = np.asarray(reg, np.int64)
    within = _REGISTER_KEYS[reg] if rank is None else _keys_within_frame(reg, np.asarray(rank, np.int64))
    return (np.asarray(frame, np.int64) << 20) | within          # within: the low 20 bits


def _keys_within_frame(reg: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """:func:`write_keys` within a frame: (per_channel, channel, rank, reg) in 20 bits."""
    per_channel = (rank >= _CHANNEL_RANK).astype(np.int64)
    channel = np.where(per_channel, REGISTER_CHANNEL[reg], 0)
    return (((per_channel << 5 | channel) << 5 | rank) << 9) | reg


_REGISTER_KEYS = _keys_within_frame(np.arange(N_REGISTERS), _RANK)      # each with its own rank


# the registers in the order image_writes writes them within a frame (those that are no
# channel's first, then channel by channel)
_WRITE_ORDER = np.argsort(_REGISTER_KEYS)
