"""Stereo panning: route each note to the OPL3's left, right or both outputs.

The OPL3 pans by channel, with two bits (0xC0 bits 4-5): left, right or
both, nothing in between.  The voices are chosen on the mono mix; this stage
then looks, for every frame and channel, at the power of the left and the
right input channel at the channel's sounding frequencies.  Per *note* -- a
run of frames in which a channel sounds at one pitch (the sine tracker moves
a held channel on to another partial: a jump of more than ``NOTE_CENTS``
starts a new note) -- those powers are summed, and a note whose one side is
more than ``PAN_DB`` louder than the other plays on that side only.  Its
level is raised by the ratio of that side's power to the mono mix's (up to
6 dB, a source on one side only), so the mono mix of the result keeps its
loudness.  Where a held channel moves on to a note on other outputs, it
rests one frame first (key off, the release on the old outputs) if it was
within 12 dB of the frame's loudest channel: switching outputs under a loud
note would click.  A quieter channel switches at once: a step of at most
a quarter of the loudest channel's amplitude.
"""

from __future__ import annotations

import numpy as np

from ..opl3 import registers as R
from .base import VoiceFrames

PAN_DB = 12.0             # one side this much louder than the other: that side only
NOTE_CENTS = 50.0         # a held channel's pitch moving further than this starts a new note
REST_RATIO = 0.25         # a channel this loud (re the frame's loudest) rests before it changes sides
_MAX_GAIN = 2.0           # a source on one side only is twice its mono-mix amplitude


def channel_hz(voices: VoiceFrames) -> tuple[np.ndarray, np.ndarray]:
    """(carrier_hz, modulator_hz), each (n_frames, n_channels): the frequencies each channel sounds at.

    ``modulator_hz`` is 0 where operator 1 is not heard on its own (FM
    connection, or a silent operator 1).
    """
    mult = np.asarray(R.MULT_FACTORS)
    base = voices.fnum.astype(np.float64) * R.NATIVE_RATE_HZ / 2.0 ** (20 - voices.block.astype(np.float64))
    f2 = np.where(voices.amp2 > 0, base * mult[voices.mult2], 0.0)
    f1 = np.where((voices.cnt == 1) & (voices.amp1 > 0), base * mult[voices.mult1], 0.0)
    return f2, f1


def side_power(voices: VoiceFrames, mag_mono: np.ndarray, mag_left: np.ndarray,
               mag_right: np.ndarray, freqs_hz: np.ndarray) -> np.ndarray:
    """(n_frames, n_channels, 3) power of the mono, left and right spectra at each channel's frequencies.

    ``mag_*`` (n_frames, n_bins) magnitude spectra of the same frames;
    summed over the three bins nearest each frequency the channel sounds.
    """
    n, n_ch = voices.fnum.shape
    out = np.zeros((n, n_ch, 3), np.float32)
    if n == 0:
        return out
    bin_hz = float(freqs_hz[1] - freqs_hz[0])
    rows = np.arange(n)[:, None, None]
    offs = np.arange(-1, 2)
    for f in channel_hz(voices):
        k = np.clip(np.rint(f / bin_hz).astype(np.int64), 1, mag_mono.shape[1] - 2)
        idx = k[..., None] + offs                                   # (n, ch, 3)
        on = (f > 0)[..., None]
        for j, mag in enumerate((mag_mono, mag_left, mag_right)):
            p = mag[rows, idx].astype(np.float32) ** 2
            out[..., j] += np.where(on, p, 0.0).sum(axis=-1)
    return out


def note_ids(sounding: np.ndarray, f_hz: np.ndarray | None = None) -> np.ndarray:
    """(n_frames, n_channels) index of the note each sounding frame belongs to, -1 where silent.

    A note is a run of consecutive sounding frames of one channel, split
    where its frequency ``f_hz`` (n_frames, n_channels; optional) moves by
    more than ``NOTE_CENTS`` from one frame to the next; notes are numbered
    channel by channel.
    """
    n, n_ch = sounding.shape
    before = np.vstack([np.zeros((1, n_ch), bool), sounding[:-1]])
    start = sounding & ~before
    if f_hz is not None and n > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            cents = 1200 * np.abs(np.log2(np.maximum(f_hz[1:], 1e-6) / np.maximum(f_hz[:-1], 1e-6)))
        start[1:] |= sounding[1:] & before[1:] & (cents > NOTE_CENTS)
    # number the starts column-major so a note's frames share one id
    order = np.cumsum(start.T.ravel()).reshape(n_ch, n).T - 1
    return np.where(sounding, order, -1)


def route(voices: VoiceFrames, power: np.ndarray, *, pan_db: float | None = None) -> VoiceFrames:
    """Set ``voices.outputs`` per note from ``power`` (see :func:`side_power`) and scale panned notes.

    Returns a new table; the input is not changed.  Silent frames keep the
    output bits of the channel's last note, so a release stays where its
    note played.
    """
    pan_db = PAN_DB if pan_db is None else float(pan_db)
    out = VoiceFrames(**{name: getattr(voices, name).copy()
                         for name in VoiceFrames.__dataclass_fields__ if name != "outputs"})
    n, n_ch = voices.fnum.shape
    sounding = (voices.amp1 > 0) | (voices.amp2 > 0)
    f2, f1 = channel_hz(voices)
    ids = note_ids(sounding, np.where(f2 > 0, f2, f1))
    n_notes = int(ids.max()) + 1 if ids.size else 0
    outputs = np.full((n, n_ch), R.OUT_STEREO, np.int64)
    if n_notes:
        sums = np.zeros((n_notes, 3), np.float64)
        on = ids >= 0
        np.add.at(sums, ids[on], power[on].astype(np.float64))
        mono, left, right = (sums[:, j] for j in range(3))
        ratio_db = 10 * np.log10(np.maximum(left, 1e-30) / np.maximum(right, 1e-30))
        heard = mono > 0
        note_out = np.where(heard & (ratio_db >= pan_db), R.OUT_LEFT,
                            np.where(heard & (ratio_db <= -pan_db), R.OUT_RIGHT, R.OUT_STEREO))
        side = np.where(note_out == R.OUT_LEFT, left, right)
        gain = np.where(note_out == R.OUT_STEREO, 1.0,
                        np.clip(np.sqrt(side / np.maximum(mono, 1e-30)), 1.0, _MAX_GAIN))
        frame_gain = np.where(on, gain[np.maximum(ids, 0)], 1.0).astype(np.float32)
        # a held channel moving to a note on other outputs rests that note's first frame,
        # unless it was quiet (then the switch is a small step)
        prev_ids = np.vstack([np.full((1, n_ch), -1), ids[:-1]])
        amp = np.maximum(voices.amp1, voices.amp2)
        prev_amp = np.vstack([np.zeros((1, n_ch), amp.dtype), amp[:-1]])
        loud = prev_amp >= REST_RATIO * prev_amp.max(axis=1, keepdims=True)
        rest = (on & (prev_ids >= 0) & (prev_ids != ids) & loud
                & (note_out[np.maximum(ids, 0)] != note_out[np.maximum(prev_ids, 0)]))
        frame_gain[rest] = 0.0
        on &= ~rest
        out.amp1 *= frame_gain
        out.amp2 *= frame_gain
        # silent frames hold the outputs of the channel's last note (forward fill)
        last = np.maximum.accumulate(np.where(on, np.arange(n)[:, None], -1), axis=0)
        held = np.where(last >= 0, ids[np.maximum(last, 0), np.arange(n_ch)[None, :]], -1)
        outputs = np.where(held >= 0, note_out[np.maximum(held, 0)], R.OUT_STEREO)
    out.outputs = outputs.astype(np.uint8)
    return out
