"""VGM files for the YMF262 (OPL3): a streaming writer, a tolerant reader and a strict checker.

Times are VGM samples (44100 per second) throughout.  Register addresses are
0x000-0x1FF: bank 0 (VGM command 0x5E) and bank 1 (0x5F), as in
:mod:`wav2vgm.opl3.registers`.

Output follows ``shared/reference/VGM.md`` section 4: version 1.71 with a
256-byte header (data at 0x100), the YMF262 clock at 0x5C, only the commands
5E/5F/61/62/63/7n/66, an exact EOF offset and total, an (always present) GD3
tag after the 0x66, and every wait between two groups of writes at least
``min_wait`` samples long, because AdPlug throws shorter waits away.

Public API::

    Gd3(...).to_bytes() / Gd3.from_bytes(data)
    VgmWriter(fileobj, *, gd3=None, min_wait=40, clock_hz=CLOCK_HZ)
        .write(reg, value) .wait(n_samples) .close(end_samples=None)
    vgm_bytes(events, *, gd3=None, end_samples=None, min_wait=40) -> bytes
    write_vgm(path, events, *, gd3=None, end_samples=None, min_wait=40)
    read_vgm(source) -> VgmFile
    check_strict(data) -> list[str]

``events`` is an iterable of ``(time_samples, reg, value)`` sorted by time.
"""

from __future__ import annotations

import gzip
import io
import operator
import os
import secrets
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO, Iterable, Union

import numpy as np

from .errors import InputError, OutputError, ParameterError, VgmError, Wav2VgmError
from .opl3.registers import CLOCK_HZ

__all__ = [
    "VGM_RATE_HZ",
    "VGM_VERSION",
    "HEADER_SIZE",
    "MIN_WAIT_SAMPLES",
    "Gd3",
    "VgmWriter",
    "VgmFile",
    "vgm_bytes",
    "write_vgm",
    "read_vgm",
    "check_strict",
]

VGM_RATE_HZ = 44100
VGM_VERSION = 0x171
HEADER_SIZE = 0x100
MIN_WAIT_SAMPLES = 40           # AdPlug drops any wait shorter than this

_MAGIC = b"Vgm "
_GD3_MAGIC = b"Gd3 "
_GD3_VERSION = 0x100
_GD3_N_STRINGS = 11
_MAX_WAIT_CMD = 0xFFFF           # one 0x61 command
_U32 = struct.Struct("<I")
_FLUSH_BYTES = 1 << 20

# Header field offsets.
_OFF_EOF = 0x04
_OFF_VERSION = 0x08
_OFF_GD3 = 0x14
_OFF_TOTAL = 0x18
_OFF_LOOP = 0x1C
_OFF_LOOP_SAMPLES = 0x20
_OFF_DATA = 0x34
_OFF_YM3812 = 0x50
_OFF_YMF262 = 0x5C
_CLOCK_MASK = 0x3FFFFFFF         # bits 30/31 are flags (dual chip, hard pan)
_DUAL_BIT = 1 << 30


# --------------------------------------------------------------------------------------------
# GD3 tag
# --------------------------------------------------------------------------------------------

@dataclass
class Gd3:
    """A GD3 v1.00 tag: 11 strings, stored as null-terminated UTF-16LE.

    Field order is the order in the file.  Only ``notes`` may hold line breaks
    (U+000A); no field may hold U+0000.
    """

    title: str = ""
    title_jp: str = ""
    game: str = ""
    game_jp: str = ""
    system: str = "PC / AdLib OPL3"
    system_jp: str = ""
    author: str = ""
    author_jp: str = ""
    date: str = ""
    creator: str = "wav2vgm"
    notes: str = ""

    def to_bytes(self) -> bytes:
        """The tag as it is stored: ``"Gd3 "``, version 0x100, block length, strings."""
        parts = []
        for f in fields(self):
            text = getattr(self, f.name)
            if not isinstance(text, str):
                raise ParameterError(f"GD3 field {f.name} must be a str, got {text!r}")
            if "\x00" in text:
                raise ParameterError(f"GD3 field {f.name} contains a NUL character: {text!r}")
            if f.name != "notes":
                text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
            else:
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            try:
                parts.append(text.encode("utf-16-le") + b"\x00\x00")
            except UnicodeEncodeError as exc:
                raise ParameterError(
                    f"GD3 field {f.name} cannot be encoded as UTF-16: {text!r} ({exc.reason})"
                ) from None
        block = b"".join(parts)
        return _GD3_MAGIC + _U32.pack(_GD3_VERSION) + _U32.pack(len(block)) + block

    @classmethod
    def from_bytes(cls, data: bytes, *, base_offset: int = 0) -> "Gd3":
        """Parse a tag that starts at ``data[0]``; bytes after the tag are ignored.

        ``base_offset`` is the tag's position in the file, used only in error
        messages.  Raises :class:`VgmError` for a bad magic, a block that runs
        past the data, an odd length, fewer than 11 strings or bad UTF-16.
        """
        data = bytes(data)
        where = f"GD3 tag at 0x{base_offset:X}"
        if len(data) < 12:
            raise VgmError(f"{where}: {len(data)} bytes, need at least 12 for its header")
        if data[:4] != _GD3_MAGIC:
            raise VgmError(f"{where}: bad magic {data[:4]!r}, expected b'Gd3 '")
        n_block = _U32.unpack_from(data, 8)[0]
        if n_block > len(data) - 12:
            raise VgmError(
                f"{where}: string block length {n_block} (0x{n_block:X}) runs past the end "
                f"of the data ({len(data) - 12} bytes available)"
            )
        if n_block % 2:
            raise VgmError(f"{where}: string block length {n_block} is odd, not UTF-16")
        block = data[12:12 + n_block]
        strings: list[str] = []
        start = 0
        for i in range(0, n_block, 2):
            if block[i] == 0 and block[i + 1] == 0:
                raw = block[start:i]
                try:
                    strings.append(raw.decode("utf-16-le"))
                except UnicodeDecodeError as exc:
                    raise VgmError(
                        f"{where}: string {len(strings) + 1} at 0x{base_offset + 12 + start:X} "
                        f"is not valid UTF-16LE ({exc.reason})"
                    ) from None
                start = i + 2
                if len(strings) == _GD3_N_STRINGS:
                    break
        if len(strings) < _GD3_N_STRINGS:
            raise VgmError(
                f"{where}: found {len(strings)} null-terminated strings, expected {_GD3_N_STRINGS}"
            )
        return cls(*strings)


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------

def _encode_wait(buf: bytearray, n_samples: int) -> None:
    """Append wait commands for ``n_samples`` (>= 0) to ``buf``.

    1-16 -> 0x7n, 735 -> 0x62, 882 -> 0x63, otherwise 0x61 nnnn.  Pauses over
    65535 samples are split so that no piece is shorter than 40 samples (AdPlug
    drops each short wait command on its own).
    """
    while n_samples > _MAX_WAIT_CMD:
        rest = n_samples - _MAX_WAIT_CMD
        piece = _MAX_WAIT_CMD if rest >= MIN_WAIT_SAMPLES else n_samples - MIN_WAIT_SAMPLES
        buf += b"\x61" + piece.to_bytes(2, "little")
        n_samples -= piece
    if n_samples <= 0:
        return
    if n_samples <= 16:
        buf.append(0x70 + n_samples - 1)
    elif n_samples == 735:
        buf.append(0x62)
    elif n_samples == 882:
        buf.append(0x63)
    else:
        buf += b"\x61" + n_samples.to_bytes(2, "little")


def _encode_writes(regs, values) -> np.ndarray:
    """(n, 3) uint8 commands 5E/5F reg value for register writes, checked."""
    regs = np.asarray(regs)
    values = np.asarray(values)
    if regs.shape != values.shape or regs.ndim != 1:
        raise ParameterError(f"regs and values must be 1-D and the same length, got shapes "
                             f"{regs.shape} and {values.shape}")
    if regs.size and (regs.dtype.kind not in "iu" or values.dtype.kind not in "iu"):
        raise ParameterError(f"register writes need integers, got {regs.dtype} and {values.dtype}")
    if regs.size and (regs.min() < 0 or regs.max() > 0x1FF):
        a = int(regs[np.flatnonzero((regs < 0) | (regs > 0x1FF))[0]])
        raise ParameterError(f"register address 0x{a:X} ({a}) is outside 0x000-0x1FF")
    if values.size and (values.min() < 0 or values.max() > 0xFF):
        bad = np.flatnonzero((values < 0) | (values > 0xFF))
        raise ParameterError(f"register value {int(values[bad[0]])} for register "
                             f"0x{int(regs[bad[0]]):03X} is outside 0-255")
    cmd = np.empty((regs.size, 3), np.uint8)
    cmd[:, 0] = 0x5E + (regs >> 8)                              # 0x5F for bank 1
    cmd[:, 1] = regs & 0xFF
    cmd[:, 2] = values
    return cmd


def _header(clock_hz: int) -> bytearray:
    head = bytearray(HEADER_SIZE)
    head[0:4] = _MAGIC
    _U32.pack_into(head, _OFF_VERSION, VGM_VERSION)
    _U32.pack_into(head, _OFF_DATA, HEADER_SIZE - _OFF_DATA)        # 0xCC
    _U32.pack_into(head, _OFF_YMF262, clock_hz)
    return head


def _stream_name(fileobj) -> str:
    name = getattr(fileobj, "name", None)
    return str(name) if isinstance(name, (str, os.PathLike)) else "<stream>"


class VgmWriter:
    """Streaming YMF262 VGM 1.71 writer onto a seekable binary file object.

    The writer keeps two clocks: the *intended* time (the sum of all
    :meth:`wait` calls) and the *emitted* time (the sum of the wait commands
    written so far).  Writes that follow a wait form a new *group*; a group is
    emitted at its intended time, or ``min_wait`` samples after the previous
    group if that is later.  The delay is a debt: later groups keep their
    intended absolute times as soon as the gaps allow, so the emitted time
    never runs behind the intended time and catches up with it.

    The file starts at the object's current position.  :meth:`close` appends
    the end marker and the GD3 tag and then seeks back to fill in the header;
    for non-seekable outputs use :func:`vgm_bytes`.
    """

    def __init__(self, fileobj: BinaryIO, *, gd3: Gd3 | None = None,
                 min_wait: int = MIN_WAIT_SAMPLES, clock_hz: int = CLOCK_HZ) -> None:
        self._min_wait = _int_param("min_wait", min_wait, 0, _MAX_WAIT_CMD)
        self._clock_hz = _int_param("clock_hz", clock_hz, 1, 0xFFFFFFFF)
        if gd3 is not None and not isinstance(gd3, Gd3):
            raise ParameterError(f"gd3 must be a Gd3 or None, got {gd3!r}")
        self._gd3_bytes = (gd3 if gd3 is not None else Gd3()).to_bytes()
        self._f = fileobj
        self._name = _stream_name(fileobj)
        try:
            seekable = bool(fileobj.seekable())
        except (AttributeError, OSError, ValueError):
            seekable = False
        if not seekable:
            raise OutputError(
                f"cannot write VGM to {self._name}: the output is not seekable "
                "(use vgm_bytes() for pipes)"
            )
        self._start = self._io(fileobj.tell)
        self._buf = _header(self._clock_hz)
        self._intended = 0          # samples requested by wait()
        self._emitted = 0           # samples covered by emitted wait commands
        self._last_group: int | None = None     # emitted time of the latest group
        self._group_open = False    # True while writes join the latest group
        self._n_writes = 0
        self._closed = False
        self._loop: tuple[int, int] | None = None   # (byte position, emitted time) of the loop point

    # -- state ---------------------------------------------------------------------------------

    @property
    def time_samples(self) -> int:
        """Intended time: the sum of all :meth:`wait` calls so far."""
        return self._intended

    @property
    def emitted_samples(self) -> int:
        """Time covered by the wait commands written so far (>= the time of the last group)."""
        return self._emitted

    @property
    def n_writes(self) -> int:
        """Number of register writes so far."""
        return self._n_writes

    @property
    def closed(self) -> bool:
        return self._closed

    # -- commands ------------------------------------------------------------------------------

    def mark_loop(self) -> None:
        """Make the data from here on loop: players that loop jump back here at the end.

        The loop point is this command boundary at the current time (a wait
        still pending is emitted first, unless it is shorter than
        ``min_wait``: then it stays pending and falls inside the loop).  :meth:`close`
        fills in the loop offset (0x1C) and the loop's length in samples
        (0x20), at least ``min_wait`` (the file's end moves out that far); a
        loop of no length is left out, as players ignore one.  The
        caller makes the data after the mark set every register that
        matters, since the chip holds whatever the end left when it jumps.
        """
        if self._closed:
            raise OutputError(f"cannot write VGM to {self._name}: the writer is closed")
        self._tick()
        self._loop = (self._io(self._f.tell) - self._start + len(self._buf), self._emitted)

    def write(self, reg: int, value: int) -> None:
        """Write ``value`` (0-255) to OPL3 register ``reg`` (0x000-0x1FF) at the current time."""
        if self._closed:
            raise OutputError(f"cannot write VGM to {self._name}: the writer is closed")
        try:
            reg = operator.index(reg)
            value = operator.index(value)
        except TypeError:
            raise ParameterError(
                f"register write needs integers, got reg={reg!r}, value={value!r}"
            ) from None
        if not 0 <= reg <= 0x1FF:
            raise ParameterError(f"register address 0x{reg:X} ({reg}) is outside 0x000-0x1FF")
        if not 0 <= value <= 0xFF:
            raise ParameterError(f"register value {value} for register 0x{reg:03X} is outside 0-255")
        self._append(bytes((0x5F if reg & 0x100 else 0x5E, reg & 0xFF, value)), 1)

    def write_many(self, regs, values) -> None:
        """Write ``values[i]`` to ``regs[i]``, in order, all at the current time (one group).

        The same as calling :meth:`write` for each pair, checked and encoded
        as arrays.
        """
        if self._closed:
            raise OutputError(f"cannot write VGM to {self._name}: the writer is closed")
        cmd = _encode_writes(regs, values)
        if cmd.shape[0]:
            self._append(cmd.tobytes(), int(cmd.shape[0]))

    def write_timed(self, times, regs, values, *, ticks=None) -> None:
        """Register writes at absolute times, with a :meth:`tick` at each update on the way.

        ``times`` (VGM samples, sorted, none before the current time),
        ``regs``, ``values``: 1-D arrays; each run of equal times is one group
        of writes.  Before a group at time ``t``, the writer advances through
        every time of ``ticks`` (sorted) between the current time and ``t``,
        and to ``t`` itself, ticking at each -- one wait command per update,
        writes or not, the way players such as AdPlug keep time.  The same as
        :meth:`wait`, :meth:`tick` and :meth:`write_many` in that order, in one
        call (the converter writes all its frames this way).
        """
        if self._closed:
            raise OutputError(f"cannot write VGM to {self._name}: the writer is closed")
        cmd = _encode_writes(regs, values)
        times = np.asarray(times, np.int64)
        if times.shape != (cmd.shape[0],):
            raise ParameterError(f"times must be 1-D like regs, got shape {times.shape}")
        if times.size == 0:
            return
        if times[0] < self._intended or np.any(np.diff(times) < 0):
            raise ParameterError(f"write times must be sorted and >= the current time "
                                 f"{self._intended}, got {int(times[0])}...")
        ticks = np.zeros(0, np.int64) if ticks is None else np.asarray(ticks, np.int64)
        # only the ticks after now and before the last group matter
        ticks = ticks[np.searchsorted(ticks, self._intended, "right"):
                      np.searchsorted(ticks, times[-1], "left")]
        starts = np.flatnonzero(np.diff(times, prepend=times[0] - 1))
        if self._write_timed_fast(cmd, times, starts, ticks):
            return
        data = cmd.tobytes()
        ends = np.append(starts[1:], times.size).tolist()
        # the ticks before group g: those after the group before it (or now), before it
        from_k = np.searchsorted(ticks, np.concatenate([[self._intended], times[starts[:-1]]]),
                                 "right").tolist()
        to_k = np.searchsorted(ticks, times[starts], "left").tolist()
        tick_list = ticks.tolist()
        for lo, hi, t, k0, k1 in zip(starts.tolist(), ends, times[starts].tolist(), from_k, to_k):
            for k in range(k0, k1):
                self._advance(tick_list[k])
            if t > self._intended:
                self._advance(t)
            self._append(data[3 * lo:3 * hi], hi - lo)

    def _write_timed_fast(self, cmd: np.ndarray, times: np.ndarray, starts: np.ndarray,
                          ticks: np.ndarray) -> bool:
        """:meth:`write_timed` as array operations, where every update is its own wait command.

        That holds when nothing is pending (no debt) and every gap between
        consecutive updates (ticks and groups) is at least ``min_wait``; then
        each update is its own wait (no update waits for another) and each
        group follows its own.  The waits are :func:`_encode_wait`'s, one
        encoding per distinct gap.  Returns False, having done nothing, where
        that does not hold.
        """
        group_t = times[starts]
        if self._emitted != self._intended:
            return False
        if group_t[0] == self._intended and not (      # a first group now: no wait before it
                self._group_open or self._last_group is None
                or self._last_group + self._min_wait <= self._intended):
            return False
        at = np.minimum(np.searchsorted(group_t, ticks), group_t.size - 1)
        ticks = ticks[group_t[at] != ticks]                      # a group at a tick is that update
        event_t = np.concatenate([ticks, group_t])
        order = np.argsort(event_t, kind="stable")
        event_t = event_t[order]
        gaps = np.diff(event_t, prepend=self._emitted)
        if gaps[1:].min(initial=max(self._min_wait, 1)) < max(self._min_wait, 1):
            return False
        if 0 < gaps[0] < max(self._min_wait, 1):
            return False
        group_of = np.where(order >= ticks.size, order - ticks.size, -1)   # -1: a tick
        n_cmd = np.zeros(event_t.size, np.int64)
        is_group = group_of >= 0
        n_cmd[is_group] = np.diff(np.append(starts, times.size))[group_of[is_group]]
        # each distinct gap encoded once (a gap of 0, a first group now, is no command)
        gap_values = np.unique(gaps)
        gap_of = np.searchsorted(gap_values, gaps)               # (unique's inverse is slower)
        codes = []
        for g in gap_values.tolist():
            code = bytearray()
            _encode_wait(code, g)
            codes.append(bytes(code))
        code_len = np.array([len(c) for c in codes], np.int64)
        table = np.zeros((len(codes), int(code_len.max())), np.uint8)
        for i, c in enumerate(codes):
            table[i, :len(c)] = np.frombuffer(c, np.uint8)
        wait_len = code_len[gap_of]
        size = wait_len + 3 * n_cmd
        offset = np.cumsum(size) - size                          # each event's first byte
        out = np.empty(int(size.sum()), np.uint8)
        col = np.arange(table.shape[1])
        inside = col[None, :] < wait_len[:, None]                # (events, longest code)
        is_wait = np.zeros(out.size, bool)
        is_wait[(offset[:, None] + col)[inside]] = True
        out[is_wait] = table[gap_of][inside]
        # the writes, in order, in the bytes between: each group's after its wait
        out[~is_wait] = cmd.ravel()
        self._buf += out.tobytes()
        self._n_writes += int(times.size)
        self._intended = self._emitted = int(event_t[-1])
        self._last_group = self._emitted
        self._group_open = True
        if len(self._buf) >= _FLUSH_BYTES:
            self._flush()
        return True

    def advance_to(self, t: int, *, ticks=None) -> None:
        """Wait until absolute time ``t``, ticking at every time of ``ticks`` (sorted) on the way
        and at ``t``: the updates of a stretch without writes, one wait command each."""
        if self._closed:
            raise OutputError(f"cannot write VGM to {self._name}: the writer is closed")
        t = int(t)
        if ticks is not None:
            ticks = np.asarray(ticks, np.int64)
            inside = ticks[np.searchsorted(ticks, self._intended, "right"):
                           np.searchsorted(ticks, t, "left")]
            for k in inside.tolist():
                self._advance(k)
        if t > self._intended:
            self._advance(t)

    def _advance(self, t: int) -> None:
        """Wait until absolute time ``t`` (> now), then tick."""
        self._intended = t
        self._group_open = False
        self._tick()

    def _append(self, commands: bytes, n_writes: int) -> None:
        """Add encoded register writes at the current time (opening the group if needed)."""
        self._open_group()
        self._buf += commands
        self._n_writes += n_writes
        if len(self._buf) >= _FLUSH_BYTES:
            self._flush()

    def _open_group(self) -> None:
        """Emit the wait that brings the file to the current time, once per group of writes."""
        if not self._group_open:
            target = self._intended
            if self._last_group is not None:
                target = max(target, self._last_group + self._min_wait)
            if target > self._emitted:
                _encode_wait(self._buf, target - self._emitted)
                self._emitted = target
            self._last_group = self._emitted
            self._group_open = True

    def wait(self, n_samples: int) -> None:
        """Advance the intended time by ``n_samples`` VGM samples (44.1 kHz, >= 0)."""
        if self._closed:
            raise OutputError(f"cannot write VGM to {self._name}: the writer is closed")
        try:
            n_samples = operator.index(n_samples)
        except TypeError:
            raise ParameterError(f"n_samples must be an integer, got {n_samples!r}") from None
        if n_samples < 0:
            raise ParameterError(f"n_samples must be >= 0, got {n_samples}")
        if n_samples:
            self._intended += n_samples
            self._group_open = False

    def tick(self) -> None:
        """Emit the pending wait now as its own command(s), even with no writes after it.

        Players such as AdPlug run one update per wait command and carry
        rounding between updates in units of the update rate; a converter that
        ticks once per frame keeps that rate constant (and the timing exact)
        through stretches without writes.  Waits shorter than ``min_wait`` are
        left pending.
        """
        if self._closed:
            raise OutputError(f"cannot write VGM to {self._name}: the writer is closed")
        self._tick()

    def _tick(self) -> None:
        gap = self._intended - self._emitted
        if gap >= max(self._min_wait, 1):
            _encode_wait(self._buf, gap)
            self._emitted = self._intended

    def close(self, end_samples: int | None = None) -> int:
        """Finish the file and return its total length in samples.

        The file ends at ``max(end_samples, intended time, emitted time)``.
        Appends the wait up to that end, 0x66 and the GD3 tag, then fills in
        the EOF offset, total samples and GD3 offset.  A second call does nothing.
        """
        if self._closed:
            return self._emitted
        end = max(self._intended, self._emitted)
        if end_samples is not None:
            try:
                end_samples = operator.index(end_samples)
            except TypeError:
                raise ParameterError(f"end_samples must be an integer, got {end_samples!r}") from None
            if end_samples < 0:
                raise ParameterError(f"end_samples must be >= 0, got {end_samples}")
            end = max(end, end_samples)
        if self._loop is not None and self._loop[1] < end < self._loop[1] + self._min_wait:
            # a loop shorter than the shortest wait players keep would pass no time at all:
            # adplay played one of 3 samples for ever
            end = self._loop[1] + self._min_wait
        if end > 0xFFFFFFFF:
            raise ParameterError(f"total length {end} samples does not fit the VGM header")
        _encode_wait(self._buf, end - self._emitted)
        self._emitted = end
        self._buf.append(0x66)
        self._flush()
        f = self._f
        gd3_pos = self._io(f.tell) - self._start
        self._buf += self._gd3_bytes
        self._flush()
        length = self._io(f.tell) - self._start
        if length > 0xFFFFFFFF:
            raise OutputError(f"cannot write VGM to {self._name}: file of {length} bytes is too big")
        patches = [
            (_OFF_EOF, length - _OFF_EOF),
            (_OFF_VERSION, VGM_VERSION),
            (_OFF_GD3, gd3_pos - _OFF_GD3),
            (_OFF_TOTAL, end),
        ]
        if self._loop is not None and end > self._loop[1]:
            patches += [(_OFF_LOOP, self._loop[0] - _OFF_LOOP),
                        (_OFF_LOOP_SAMPLES, end - self._loop[1])]
        for off, val in patches:
            self._io(f.seek, self._start + off)
            self._io(f.write, _U32.pack(val))
        self._io(f.seek, self._start + length)
        flush = getattr(f, "flush", None)
        if flush is not None:
            self._io(flush)
        self._closed = True
        return end

    def __enter__(self) -> "VgmWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    # -- internals -----------------------------------------------------------------------------

    def _flush(self) -> None:
        if self._buf:
            self._io(self._f.write, bytes(self._buf))
            self._buf.clear()

    def _io(self, func, *args):
        try:
            return func(*args)
        except (OSError, ValueError) as exc:
            raise OutputError(f"cannot write VGM to {self._name}: {exc}") from exc


def _int_param(name: str, value, lo: int, hi: int) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise ParameterError(f"{name} must be an integer, got {value!r}") from None
    if not lo <= value <= hi:
        raise ParameterError(f"{name} must be in {lo}-{hi}, got {value}")
    return value


def _feed(writer: VgmWriter, events: Iterable[tuple[int, int, int]]) -> None:
    """Feed ``(time_samples, reg, value)`` events, sorted by time, into ``writer``."""
    last = 0
    for i, event in enumerate(events):
        try:
            time_samples, reg, value = event
            time_samples = operator.index(time_samples)
        except (TypeError, ValueError):
            raise ParameterError(
                f"event #{i} must be (time_samples:int, reg:int, value:int), got {event!r}"
            ) from None
        if time_samples < last:
            raise ParameterError(
                f"event #{i} at time_samples={time_samples} is earlier than the previous "
                f"event at {last}; events must be sorted by time"
            )
        if time_samples > last:
            writer.wait(time_samples - last)
            last = time_samples
        writer.write(reg, value)


def vgm_bytes(events: Iterable[tuple[int, int, int]], *, gd3: Gd3 | None = None,
              end_samples: int | None = None, min_wait: int = MIN_WAIT_SAMPLES) -> bytes:
    """Build a whole VGM file in memory from ``(time_samples, reg, value)`` events."""
    out = io.BytesIO()
    writer = VgmWriter(out, gd3=gd3, min_wait=min_wait)
    _feed(writer, events)
    writer.close(end_samples)
    return out.getvalue()


PathLike = Union[str, "os.PathLike[str]"]


def write_vgm(path: PathLike, events: Iterable[tuple[int, int, int]], *,
              gd3: Gd3 | None = None, end_samples: int | None = None,
              min_wait: int = MIN_WAIT_SAMPLES) -> None:
    """Write a VGM file atomically (``.vgz``: gzip-compressed, deterministic).

    The bytes go to a temporary file in the target folder that replaces
    ``path`` only when complete; on failure the temporary file is removed and
    :class:`OutputError` names ``path``.  Errors of wav2vgm's own (for example
    :class:`ParameterError` for unsorted events) pass through unchanged, after
    the same clean-up.  ``path == "-"`` writes the plain VGM to stdout.
    """
    if str(path) == "-":
        data = vgm_bytes(events, gd3=gd3, end_samples=end_samples, min_wait=min_wait)
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except (OSError, ValueError) as exc:
            raise OutputError(f"cannot write VGM to stdout: {exc}") from exc
        return

    target = Path(path)
    folder = target.parent
    tmp: Path | None = None
    fd = -1
    try:
        for _ in range(100):
            candidate = folder / f".{target.name}.{secrets.token_hex(4)}.tmp"
            try:
                # os.open applies the umask, so the result gets ordinary permissions.
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | getattr(os, "O_BINARY", 0), 0o666)
            except FileExistsError:
                continue
            tmp = candidate
            break
        else:
            raise OSError("no free temporary file name")
        with os.fdopen(fd, "wb") as f:
            fd = -1
            if target.suffix.lower() == ".vgz":
                data = vgm_bytes(events, gd3=gd3, end_samples=end_samples, min_wait=min_wait)
                with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
                    gz.write(data)
            else:
                writer = VgmWriter(f, gd3=gd3, min_wait=min_wait)
                _feed(writer, events)
                writer.close(end_samples)
        os.replace(tmp, target)
        tmp = None
    except Wav2VgmError as exc:
        if isinstance(exc, OutputError):
            raise OutputError(f"cannot write {target}: {_one_line(exc)}") from exc
        raise
    except Exception as exc:
        raise OutputError(f"cannot write {target}: {_one_line(exc)}") from exc
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------

@dataclass
class VgmFile:
    """The OPL register writes of a VGM file and the header fields that matter for them.

    ``times`` (int64, VGM samples), ``regs`` (uint16, 0x000-0x1FF: YMF262 port 1
    maps to 0x100-0x1FF; YM3812/YM3526/Y8950 writes go to bank 0) and ``values``
    (uint8) have one entry per write.  Clocks have the flag bits 30/31 removed;
    ``dual_chip`` reports bit 30 of either clock (the second chip's writes are
    not in the arrays but counted in ``n_other_commands``).  ``loop_offset`` is
    the absolute byte position of the loop point in the (decompressed) file,
    0 if none, ``loop_samples`` the header's length of the loop (0x20) and
    ``loop_write`` the index of the first write the loop replays (-1: no
    loop, or its offset is not at a command).  ``end_time`` is the time at the 0x66 or at the end of the data;
    ``truncated`` is True when the data ended cleanly without a 0x66.
    ``wait_ends`` holds the time at the end of every wait command: players such
    as AdPlug run one update per wait command, which shapes their timing.
    """

    version: int
    ymf262_clock: int
    ym3812_clock: int
    total_samples: int
    loop_offset: int
    loop_samples: int
    loop_write: int
    times: np.ndarray
    regs: np.ndarray
    values: np.ndarray
    end_time: int
    wait_ends: np.ndarray
    gd3: Gd3 | None
    dual_chip: bool
    truncated: bool
    n_other_commands: int

    @property
    def n_writes(self) -> int:
        return int(self.times.size)


# Command kinds for the reader.
_K_UNKNOWN, _K_SKIP, _K_W0, _K_W1, _K_WAIT16, _K_WAITN, _K_WAIT8N, _K_END, _K_BLOCK = range(9)


def _command_table() -> tuple[list[int], list[int]]:
    """(kind, operand byte count) for every command byte, per VGM spec 1.71."""
    kind = [_K_UNKNOWN] * 256
    size = [0] * 256

    def skip(lo: int, hi: int, n: int) -> None:
        for c in range(lo, hi + 1):
            kind[c] = _K_SKIP
            size[c] = n

    skip(0x30, 0x3F, 1)
    skip(0x40, 0x4E, 2)
    skip(0x4F, 0x50, 1)
    skip(0x51, 0x5F, 2)
    skip(0x62, 0x63, 0)
    skip(0x68, 0x68, 11)
    skip(0x90, 0x91, 4)
    skip(0x92, 0x92, 5)
    skip(0x93, 0x93, 10)
    skip(0x94, 0x94, 1)
    skip(0x95, 0x95, 4)
    skip(0xA0, 0xBF, 2)
    skip(0xC0, 0xDF, 3)
    skip(0xE0, 0xFF, 4)
    for c in (0x5A, 0x5B, 0x5C, 0x5E):
        kind[c] = _K_W0
    kind[0x5F] = _K_W1
    kind[0x61], size[0x61] = _K_WAIT16, 2
    for c in range(0x70, 0x80):
        kind[c], size[c] = _K_WAITN, 0
    for c in range(0x80, 0x90):
        kind[c], size[c] = _K_WAIT8N, 0
    kind[0x66] = _K_END
    kind[0x67] = _K_BLOCK
    return kind, size


_KIND, _SIZE = _command_table()
_CMD_NAMES = {0x5A: "YM3812", 0x5B: "YM3526", 0x5C: "Y8950", 0x5E: "YMF262 port 0",
              0x5F: "YMF262 port 1"}


def _load(source) -> bytes:
    """Bytes of ``source`` (path, bytes-like or binary file object), gunzipped if needed."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "VGM data"
    elif isinstance(source, (str, os.PathLike)):
        name = str(source)
        try:
            with open(source, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror or exc}") from exc
    elif hasattr(source, "read"):
        name = _stream_name(source)
        try:
            data = source.read()
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {name}: {exc}") from exc
        if not isinstance(data, (bytes, bytearray)):
            raise ParameterError(f"{name} must be opened in binary mode")
        data = bytes(data)
    else:
        raise ParameterError(f"read_vgm needs a path, bytes or a binary file, got {source!r}")
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise VgmError(f"{name}: corrupt gzip (.vgz) data: {exc}") from None
    return data


def read_vgm(source) -> VgmFile:
    """Read the OPL register writes of a VGM/VGZ file (path, bytes or binary file object).

    Tolerant of other chips (their commands are skipped by their real
    length) and of old versions (data at 0x40 before 1.50); raises
    :class:`VgmError` naming what is wrong and its hex offset for a bad
    magic, a short header, offsets past the end, a bad GD3 tag, an unknown
    command byte or data that ends in the middle of a command.
    """
    return _parse(_load(source))


def _parse(data: bytes) -> VgmFile:
    n = len(data)
    if n == 0:
        raise VgmError("VGM data is empty")
    if n < 0x40:
        raise VgmError(f"VGM header truncated: file is {n} bytes (0x{n:X}), need at least 0x40")
    if data[:4] != _MAGIC:
        raise VgmError(f"not a VGM file: magic at 0x0 is {data[:4]!r}, expected b'Vgm '")
    version = _U32.unpack_from(data, _OFF_VERSION)[0]

    data_rel = _U32.unpack_from(data, _OFF_DATA)[0] if version >= 0x150 else 0
    data_pos = _OFF_DATA + data_rel if data_rel else 0x40
    if data_pos > n:
        raise VgmError(
            f"VGM data offset at 0x34 points to 0x{data_pos:X}, past the end of the file (0x{n:X})"
        )

    def field(off: int) -> int:
        # Header bytes at or beyond the data start count as 0.
        if off + 4 > data_pos or off + 4 > n:
            return 0
        return _U32.unpack_from(data, off)[0]

    eof_rel = field(_OFF_EOF)
    eof = _OFF_EOF + eof_rel if eof_rel else n
    if eof > n or eof < data_pos:
        eof = n                     # tolerated, as libvgm does (truncated copies)

    gd3 = None
    gd3_pos = 0
    gd3_rel = field(_OFF_GD3)
    if gd3_rel:
        gd3_pos = _OFF_GD3 + gd3_rel
        if gd3_pos >= n:
            raise VgmError(
                f"GD3 offset at 0x14 points to 0x{gd3_pos:X}, past the end of the file (0x{n:X})"
            )
        gd3 = Gd3.from_bytes(data[gd3_pos:], base_offset=gd3_pos)

    loop_rel = field(_OFF_LOOP)
    loop_pos = _OFF_LOOP + loop_rel if loop_rel else 0
    if loop_pos >= n:
        raise VgmError(
            f"loop offset at 0x1C points to 0x{loop_pos:X}, past the end of the file (0x{n:X})"
        )

    ymf262 = field(_OFF_YMF262)
    ym3812 = field(_OFF_YM3812)

    limit = eof
    if data_pos < gd3_pos < limit:
        limit = gd3_pos

    times = array("q")
    regs = array("H")
    values = array("B")
    wait_ends = array("q")
    kind_of, size_of = _KIND, _SIZE
    pos = data_pos
    t = 0
    n_other = 0
    ended = False
    loop_write = -1                 # writes before the loop point (-1: not met)
    while pos < limit:
        cmd = data[pos]
        kind = kind_of[cmd]
        if pos == loop_pos:
            loop_write = len(times)
        if kind == _K_W0 or kind == _K_W1:
            if pos + 3 > limit:
                _cut(cmd, pos, limit)
            times.append(t)
            regs.append(data[pos + 1] | (0x100 if kind == _K_W1 else 0))
            values.append(data[pos + 2])
            pos += 3
        elif kind == _K_WAITN:
            t += (cmd & 0x0F) + 1
            wait_ends.append(t)
            pos += 1
        elif kind == _K_WAIT16:
            if pos + 3 > limit:
                _cut(cmd, pos, limit)
            t += data[pos + 1] | (data[pos + 2] << 8)
            wait_ends.append(t)
            pos += 3
        elif kind == _K_SKIP:
            if cmd == 0x62:
                t += 735
                wait_ends.append(t)
            elif cmd == 0x63:
                t += 882
                wait_ends.append(t)
            else:
                n_other += 1
            pos += 1 + size_of[cmd]
            if pos > limit:
                _cut(cmd, pos - 1 - size_of[cmd], limit)
        elif kind == _K_WAIT8N:
            t += cmd & 0x0F
            n_other += 1
            pos += 1
        elif kind == _K_END:
            ended = True
            break
        elif kind == _K_BLOCK:
            if pos + 7 > limit:
                _cut(cmd, pos, limit)
            if data[pos + 1] != 0x66:
                raise VgmError(
                    f"data block at 0x{pos:X}: byte 0x{data[pos + 1]:02X} where the 0x66 "
                    "marker belongs"
                )
            block_len = _U32.unpack_from(data, pos + 3)[0] & 0x7FFFFFFF
            end = pos + 7 + block_len
            if end > limit:
                raise VgmError(
                    f"data block at 0x{pos:X} of {block_len} bytes runs past the end of the "
                    f"command data (0x{limit:X})"
                )
            n_other += 1
            pos = end
        else:
            raise VgmError(f"unknown VGM command byte 0x{cmd:02X} at offset 0x{pos:X}")

    return VgmFile(
        version=version,
        ymf262_clock=ymf262 & _CLOCK_MASK,
        ym3812_clock=ym3812 & _CLOCK_MASK,
        total_samples=field(_OFF_TOTAL),
        loop_offset=loop_pos,
        loop_samples=field(_OFF_LOOP_SAMPLES) if loop_pos else 0,
        loop_write=loop_write if loop_pos else -1,
        times=np.frombuffer(times, dtype=np.int64).copy() if times else np.zeros(0, np.int64),
        regs=np.frombuffer(regs, dtype=np.uint16).copy() if regs else np.zeros(0, np.uint16),
        values=np.frombuffer(values, dtype=np.uint8).copy() if values else np.zeros(0, np.uint8),
        end_time=t,
        wait_ends=np.frombuffer(wait_ends, dtype=np.int64).copy() if wait_ends else np.zeros(0, np.int64),
        gd3=gd3,
        dual_chip=bool((ymf262 | ym3812) & _DUAL_BIT),
        truncated=not ended,
        n_other_commands=n_other,
    )


def _cut(cmd: int, pos: int, limit: int) -> None:
    name = _CMD_NAMES.get(cmd, "command")
    raise VgmError(
        f"VGM data ends in the middle of {name} 0x{cmd:02X} at offset 0x{pos:X} "
        f"(data ends at 0x{limit:X})"
    )


# --------------------------------------------------------------------------------------------
# Strict check of our own output
# --------------------------------------------------------------------------------------------

def check_strict(data: bytes, *, min_wait: int = MIN_WAIT_SAMPLES) -> list[str]:
    """Problems that would make a file differ from what :class:`VgmWriter` writes.

    Returns an empty list for a good file.  Checks: magic, version 0x171, data
    at 0x100, exact EOF offset, YMF262 clock set, only the commands
    5E/5F/61/62/63/7n/66, total samples = sum of waits, every wait command
    between two groups of writes >= ``min_wait``, a loop point (if any) on a
    command boundary with the waits after it in 0x20, a valid GD3 tag right
    after the 0x66 that runs to the end of the file.  ``.vgz`` data is
    gunzipped first.  Never raises for bad data.
    """
    data = bytes(data)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            return [f"corrupt gzip data: {exc}"]
    n = len(data)
    problems: list[str] = []
    if n < HEADER_SIZE:
        return [f"file is {n} bytes, shorter than the 0x{HEADER_SIZE:X}-byte header"]
    u32 = lambda off: _U32.unpack_from(data, off)[0]  # noqa: E731
    if data[:4] != _MAGIC:
        problems.append(f"magic at 0x0 is {data[:4]!r}, expected b'Vgm '")
    if u32(_OFF_VERSION) != VGM_VERSION:
        problems.append(f"version at 0x8 is 0x{u32(_OFF_VERSION):X}, expected 0x171")
    if u32(_OFF_EOF) + 4 != n:
        problems.append(
            f"EOF offset at 0x4 is 0x{u32(_OFF_EOF):X}, expected file length - 4 = 0x{n - 4:X}"
        )
    if u32(_OFF_DATA) != HEADER_SIZE - _OFF_DATA:
        problems.append(f"data offset at 0x34 is 0x{u32(_OFF_DATA):X}, expected 0xCC (data at 0x100)")
    if (u32(_OFF_YMF262) & _CLOCK_MASK) == 0:
        problems.append("YMF262 clock at 0x5C is not set")

    # Command stream: only the commands AdPlug understands.
    pos = HEADER_SIZE
    total = 0
    end_pos = -1
    loop_pos = _OFF_LOOP + u32(_OFF_LOOP) if u32(_OFF_LOOP) else 0
    total_at_loop = -1              # the waits before the loop point, once it is met
    seen_write = False
    pending: list[tuple[int, int]] = []     # wait commands since the last write: (pos, n)
    short: list[str] = []
    while pos < n:
        cmd = data[pos]
        if pos == loop_pos:
            total_at_loop = total
        if cmd in (0x5E, 0x5F):
            if pos + 3 > n:
                problems.append(f"command 0x{cmd:02X} at 0x{pos:X} is cut off by the end of file")
                break
            if seen_write:
                short += [f"wait of {w} samples at 0x{p:X} between two write groups is shorter "
                          f"than {min_wait}" for p, w in pending if w < min_wait]
            pending.clear()
            seen_write = True
            pos += 3
        elif cmd == 0x61:
            if pos + 3 > n:
                problems.append(f"command 0x61 at 0x{pos:X} is cut off by the end of file")
                break
            w = data[pos + 1] | (data[pos + 2] << 8)
            pending.append((pos, w))
            total += w
            pos += 3
        elif cmd in (0x62, 0x63) or 0x70 <= cmd <= 0x7F:
            w = 735 if cmd == 0x62 else 882 if cmd == 0x63 else (cmd & 0x0F) + 1
            pending.append((pos, w))
            total += w
            pos += 1
        elif cmd == 0x66:
            end_pos = pos
            break
        else:
            problems.append(f"command byte 0x{cmd:02X} at 0x{pos:X} is not one of "
                            "5E/5F/61/62/63/7n/66")
            break
    problems += short[:10]
    if len(short) > 10:
        problems.append(f"... and {len(short) - 10} more short waits")
    if end_pos < 0:
        problems.append("no end-of-data command 0x66")
    if u32(_OFF_TOTAL) != total:
        problems.append(f"total samples at 0x18 is {u32(_OFF_TOTAL)}, the waits sum to {total}")
    if loop_pos and total_at_loop < 0:
        problems.append(f"loop offset at 0x1C points to 0x{loop_pos:X}, not to a command "
                        "before the end of the data")
    elif loop_pos and u32(_OFF_LOOP_SAMPLES) != total - total_at_loop:
        problems.append(f"loop samples at 0x20 is {u32(_OFF_LOOP_SAMPLES)}, the waits after "
                        f"the loop point sum to {total - total_at_loop}")
    elif not loop_pos and u32(_OFF_LOOP_SAMPLES):
        problems.append(f"loop samples at 0x20 is {u32(_OFF_LOOP_SAMPLES)} without a loop offset")
    elif loop_pos and total_at_loop == total:
        problems.append("the loop has no length (players ignore it)")

    gd3_rel = u32(_OFF_GD3)
    if gd3_rel == 0:
        problems.append("no GD3 tag (offset at 0x14 is 0)")
    else:
        gd3_pos = _OFF_GD3 + gd3_rel
        if end_pos >= 0 and gd3_pos != end_pos + 1:
            problems.append(
                f"GD3 tag at 0x{gd3_pos:X} does not follow the 0x66 at 0x{end_pos:X} directly"
            )
        if gd3_pos + 12 > n:
            problems.append(f"GD3 offset at 0x14 points to 0x{gd3_pos:X}, past the end (0x{n:X})")
        else:
            try:
                Gd3.from_bytes(data[gd3_pos:], base_offset=gd3_pos)
            except VgmError as exc:
                problems.append(str(exc))
            else:
                if u32(gd3_pos + 4) != _GD3_VERSION:
                    problems.append(f"GD3 version at 0x{gd3_pos + 4:X} is 0x{u32(gd3_pos + 4):X}, "
                                    "expected 0x100")
                tag_end = gd3_pos + 12 + u32(gd3_pos + 8)
                if tag_end != n:
                    problems.append(f"GD3 tag ends at 0x{tag_end:X}, not at the end of the file "
                                    f"(0x{n:X})")
    return problems


def vgm_statistics(vgm: VgmFile) -> dict:
    """What ``wav2vgm info`` prints: header, timing, GD3 fields and write statistics."""
    from .opl3.queue import worst_delay_s      # (the queue module imports this one)
    duration_s = vgm.end_time / VGM_RATE_HZ
    if vgm.times.size:
        _, counts = np.unique(vgm.times, return_counts=True)
        burst = int(counts.max())
    else:
        burst = 0
    chip = (f"YMF262 (OPL3) {vgm.ymf262_clock} Hz" if vgm.ymf262_clock
            else f"YM3812 (OPL2) {vgm.ym3812_clock} Hz" if vgm.ym3812_clock else "none")
    out = {
        "version": f"{vgm.version >> 8:x}.{vgm.version & 0xFF:02x}",
        "chip": chip + (" x2" if vgm.dual_chip else ""),
        "duration_s": f"{duration_s:.3f}",
        "total_samples": str(vgm.total_samples),
        "loop": (f"{vgm.loop_samples / VGM_RATE_HZ:.3f} s, from byte 0x{vgm.loop_offset:X} to the end"
                 if vgm.loop_offset and vgm.loop_samples else "none"),
        "writes": str(vgm.n_writes),
        "writes_per_second": f"{vgm.n_writes / duration_s:.1f}" if duration_s > 0 else "0",
        "largest_burst": str(burst),
        # on players that queue writes (adplay, libvgm), how late the worst-placed one lands
        "queue_delay_max_ms": f"{worst_delay_s(vgm.times) * 1000:.2f}",
        "other_commands": str(vgm.n_other_commands),
    }
    if vgm.truncated:
        out["warning"] = "data ends without an end-of-data command"
    gd3 = vgm.gd3
    if gd3 is not None:
        for f in fields(gd3):
            value = getattr(gd3, f.name)
            if value:
                out[f"gd3_{f.name}"] = value.replace("\n", " ")
    return out
