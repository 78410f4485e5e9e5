"""Timed register writes -> audio: how a VGM player drives the chip.

A VGM stamps writes in 44.1 kHz samples; the chip runs at its native rate
(49,716 Hz).  :func:`player_write_times` maps one to the other the way the
reference player (AdPlug's ``adplay`` with the Nuked core) does, so that our
render lines up with the reference sample for sample; ``timing="exact"`` maps
times by plain rounding instead.  :func:`render_events` runs the emulator and
optionally resamples; :func:`event_blocks` does the same a block at a time, for
files too long to hold (``wav2vgm render``).
"""

from __future__ import annotations

from math import gcd
from typing import Iterator

import numpy as np

from ..errors import ParameterError
from ..resample import resample_poly, resampled_blocks
from . import registers as R
from .emulator import Chip, render_blocks

VGM_RATE_HZ = 44100
ADPLAY_MIN_WAIT = 40      # AdPlug drops shorter waits
ADPLAY_BUFFER = 512       # adplay's default buffer, in samples


def player_write_times(times_vgm, end_vgm: int, *, rate_hz: int = R.NATIVE_RATE_INT,
                       timing: str = "adplay", wait_ends=None) -> tuple[np.ndarray, int]:
    """Native-rate sample at which each write reaches the chip, and the render length.

    ``timing="adplay"`` replays adplay's scheduling: the player runs one
    "update" per wait of at least 40 VGM samples (shorter waits are dropped),
    and the host renders ``rate/refresh`` samples between updates in chunks
    rounded to multiples of 4, with the rounding carried (AdPlug ``vgm.cpp``,
    adplay ``output.cc``).  ``timing="exact"`` rounds ``t * rate / 44100``.
    ``wait_ends``: the time at the end of each wait command, when known (one
    update per command); otherwise every gap between writes is one wait.
    """
    times_vgm = np.asarray(times_vgm, dtype=np.int64)
    end_vgm = int(max(end_vgm, times_vgm[-1] if times_vgm.size else 0))
    if timing == "exact":
        scale = rate_hz / VGM_RATE_HZ
        return (np.floor(times_vgm * scale + 0.5).astype(np.int64),
                int(np.floor(end_vgm * scale + 0.5)))
    if timing != "adplay":
        raise ParameterError(f"timing must be 'adplay' or 'exact', got {timing!r}")
    # updates: the player stops at each wait >= 40 samples
    extra = [] if wait_ends is None else [np.asarray(wait_ends, np.int64)]
    stamps = np.unique(np.concatenate([times_vgm, [0, end_vgm], *extra]))
    waits = np.diff(stamps)
    update_of_stamp = np.zeros(stamps.size, dtype=np.int64)
    update_waits: list[int] = []
    u = 0
    for j, w in enumerate(waits.tolist()):
        update_of_stamp[j] = u
        if w >= ADPLAY_MIN_WAIT:
            update_waits.append(int(w))
            u += 1
    update_of_stamp[-1] = u
    n_updates = u + 1
    update_pos = np.zeros(n_updates, dtype=np.int64)
    f32 = np.float32
    minicnt = 0
    refresh = f32(1000.0)
    pos = 0
    nxt = 0
    while nxt < n_updates:
        towrite = ADPLAY_BUFFER
        while towrite > 0 and nxt < n_updates:
            while minicnt < 0 and nxt < n_updates:
                minicnt += rate_hz
                update_pos[nxt] = pos
                if nxt < len(update_waits):
                    refresh = f32(f32(VGM_RATE_HZ) / f32(update_waits[nxt]))
                nxt += 1
            if nxt >= n_updates:
                break
            i = min(towrite, int(f32(f32(minicnt) / refresh) + f32(4)) & ~3)
            pos += i
            towrite -= i
            minicnt -= int(refresh * f32(i))
    # the last update (end of data) is followed by the final wait's worth of samples
    tail = int(round((end_vgm - stamps[-1]) * rate_hz / VGM_RATE_HZ))
    total = int(update_pos[-1] + tail)
    stamp_index = np.searchsorted(stamps, times_vgm)
    return update_pos[update_of_stamp[stamp_index]], total


def resample(stereo: np.ndarray, *, from_hz: int, to_hz: int) -> np.ndarray:
    """Polyphase resampling of (n, channels) audio; returns float32."""
    x = np.asarray(stereo, dtype=np.float32)
    if from_hz == to_hz:
        return x
    g = gcd(int(from_hz), int(to_hz))
    return resample_poly(x, int(to_hz) // g, int(from_hz) // g, axis=0).astype(np.float32)


def event_blocks(times_vgm, regs, values, *, end_vgm: int, rate_hz: int | None = None,
                 timing: str = "adplay", tail_s: float = 0.0, wait_ends=None,
                 progress=None, chip: Chip | None = None) -> tuple[int, Iterator[np.ndarray]]:
    """:func:`render_events` a block at a time, so a long file never sits in memory whole:
    returns the number of samples the blocks will hold and an iterator over them, (n, 2)
    float32 (about a second each where resampled, else one emulator span)."""
    native = R.NATIVE_RATE_INT
    times, n_native = player_write_times(times_vgm, end_vgm, rate_hz=native, timing=timing,
                                         wait_ends=wait_ends)
    n_native += int(round(tail_s * native))
    spans = (s.astype(np.float32) / 32768.0 for s in render_blocks(
        times, regs, values, n_samples=n_native, chip=chip,
        progress=progress(n_native) if progress is not None else None))
    if rate_hz is None or int(rate_hz) == native:
        return n_native, spans
    g = gcd(native, int(rate_hz))
    up, down = int(rate_hz) // g, native // g
    return -(-n_native * up // down), resampled_blocks(_in_order(spans), n_native, up, down,
                                                       block=native)


def _in_order(blocks: Iterator[np.ndarray]):
    """``read(count, start)`` over consecutive ``blocks``, for :func:`resampled_blocks`
    (which reads in order, each sample once)."""
    pending = [np.zeros((0, 2), np.float32)]
    at = [0]                                     # the next sample read will give

    def read(count: int, start: int) -> np.ndarray:
        if start != at[0]:
            raise ParameterError(f"blocks are read in order: asked for {start}, next is {at[0]}")
        at[0] += count
        have = sum(len(b) for b in pending)
        while have < count:
            pending.append(next(blocks))
            have += len(pending[-1])
        joined = np.concatenate(pending)
        pending[:] = [joined[count:]]
        return joined[:count]
    return read


def _gathered(n: int, blocks: Iterator[np.ndarray]) -> np.ndarray:
    out = np.empty((n, 2), np.float32)
    pos = 0
    for b in blocks:
        out[pos:pos + len(b)] = b
        pos += len(b)
    return out


def render_events(times_vgm, regs, values, *, end_vgm: int, rate_hz: int | None = None,
                  timing: str = "adplay", tail_s: float = 0.0, wait_ends=None,
                  progress=None, chip: Chip | None = None) -> np.ndarray:
    """Render VGM-timed writes; returns (n, 2) float32 in [-1, 1) at ``rate_hz``.

    ``rate_hz=None`` keeps the native rate (49,716 Hz).  ``tail_s`` renders
    that much extra after the end so release tails are heard.  ``progress``:
    called once with the number of native samples to render; it returns a
    callable that is given each step's count of samples rendered, or None.
    ``chip``: the chip to play them on (default: a fresh :class:`Chip`).
    """
    return _gathered(*event_blocks(times_vgm, regs, values, end_vgm=end_vgm, rate_hz=rate_hz,
                                   timing=timing, tail_s=tail_s, wait_ends=wait_ends,
                                   progress=progress, chip=chip))


def vgm_blocks(vgm, *, rate_hz: int | None = 44100, timing: str = "adplay",
               tail_s: float = 0.0, progress=None, loops: int = 1) -> tuple[int, Iterator[np.ndarray]]:
    """:func:`render_vgm` a block at a time (as :func:`event_blocks`)."""
    if not isinstance(loops, int) or loops < 1:
        raise ParameterError(f"loops must be an integer >= 1, got {loops!r}")
    times, regs, values = vgm.times, vgm.regs, vgm.values
    end = int(vgm.end_time)
    wait_ends = getattr(vgm, "wait_ends", None)
    first, length = getattr(vgm, "loop_write", -1), int(getattr(vgm, "loop_samples", 0))
    if loops > 1 and first >= 0 and 0 < length <= end:
        shift = np.arange(1, loops)[:, None] * length                 # each repeat's, (loops-1, 1)
        times = np.concatenate([times, (times[first:][None, :] + shift).ravel()])
        regs = np.concatenate([regs, np.tile(regs[first:], loops - 1)])
        values = np.concatenate([values, np.tile(values[first:], loops - 1)])
        if wait_ends is not None:
            tail = wait_ends[wait_ends > end - length]
            wait_ends = np.concatenate([wait_ends, (tail[None, :] + shift).ravel()])
        end += (loops - 1) * length
    return event_blocks(times, regs, values, end_vgm=end, rate_hz=rate_hz, timing=timing,
                        tail_s=tail_s, wait_ends=wait_ends, progress=progress)


def render_vgm(vgm, *, rate_hz: int | None = 44100, timing: str = "adplay",
               tail_s: float = 0.0, progress=None, loops: int = 1) -> np.ndarray:
    """Render a parsed VGM (:class:`wav2vgm.vgm.VgmFile`) to (n, 2) float32 at ``rate_hz``.

    OPL2 files (YM3812 only) play on the OPL3 in its OPL2-compatible mode,
    as they would on a real OPL3 card.  ``progress``: as for :func:`render_events`.
    ``loops``: times the data plays, jumping back to the loop point as
    looping players do (files without a loop play once).
    """
    return _gathered(*vgm_blocks(vgm, rate_hz=rate_hz, timing=timing, tail_s=tail_s,
                                 progress=progress, loops=loops))
