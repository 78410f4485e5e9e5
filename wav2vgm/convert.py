"""The conversion pipeline: audio -> frames -> spectra -> voices -> registers -> VGM.

Each stage is a plain function or object; :func:`convert` wires them and the
CLI only parses options and shows progress.  Audio is read in blocks and the
VGM is written as it goes; the only whole-file state is the per-frame voice
table (a few hundred bytes per frame), needed because the loudness is
normalised over the whole input before levels are quantised.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import ParameterError
from .methods.base import FULL_SCALE, ONSET_ATTACK_S, VoiceFrames, onset_gains, quantise, subdivide
from .methods.loudness import loudness_gain, stride_for
from .methods.features import ANALYSIS_RATE_HZ, N_FFT, WINDOW, analysis_spectra, analysis_window
from .opl3 import registers as R
from .opl3.queue import WriteGovernor
from .vgm import Gd3, VgmWriter

METHODS = ("model", "sines")
# analysis frames per second when none is given; None: chosen per input
# (:func:`with_frame_rate`), 60 for steady sound and, where it changes often
# (speech gains most), 90 at "balanced" and 120 at "best"
DEFAULT_FRAME_RATE_HZ = {"fast": 60.0, "balanced": None, "best": None}


@dataclass(frozen=True)
class ConvertOptions:
    """Everything that shapes a conversion (the CLI's options)."""

    method: str = "model"
    # None: 60 Hz; for the model at quality "balanced" or "best" chosen per input when it
    # is opened (:func:`with_frame_rate`)
    frame_rate_hz: float | None = None
    substeps: int = 12          # register updates per frame, at most (:func:`update_steps`)
    voices: int = 18
    gain_db: float = 0.0
    quality: str = "balanced"
    model_path: str | None = None
    stereo: bool = True         # two-channel inputs: notes panned left, right or both
    split_sides: bool = False   # two-channel inputs: each side its own channels (:func:`analyse`)
    loop_start_s: float | None = None   # players that loop replay from here (0: the whole file)
    title: str = ""
    author: str = ""
    game: str = ""
    notes: str = ""
    date: str = ""

    def __post_init__(self):
        if self.method not in METHODS:
            raise ParameterError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.quality not in ("fast", "balanced", "best"):
            raise ParameterError(f"quality must be fast, balanced or best, got {self.quality!r}")
        if self.frame_rate_hz is None:
            rate = DEFAULT_FRAME_RATE_HZ[self.quality] if self.method == "model" else 60.0
            object.__setattr__(self, "frame_rate_hz", rate)
        rate = self.frame_rate_hz
        if rate is not None and not (isinstance(rate, (int, float)) and math.isfinite(rate)
                                     and 1.0 <= rate <= 1000.0):
            raise ParameterError(f"frame rate must be 1-1000 Hz, got {self.frame_rate_hz!r}")
        if not isinstance(self.substeps, int) or not 1 <= self.substeps <= 16:
            raise ParameterError(f"substeps must be 1-16, got {self.substeps!r}")
        if not 1 <= int(self.voices) <= 18 or int(self.voices) != self.voices:
            raise ParameterError(f"voices must be 1-18, got {self.voices!r}")
        if self.split_sides and self.voices < 2:
            raise ParameterError(f"splitting the sides needs at least 2 voices, got {self.voices!r}")
        if self.split_sides and not self.stereo:
            raise ParameterError("splitting the sides plays each on its own output: "
                                 "it cannot go with --mono")
        if not math.isfinite(self.gain_db) or abs(self.gain_db) > 60:
            raise ParameterError(f"gain must be within -60..60 dB, got {self.gain_db!r}")
        if self.loop_start_s is not None and not (
                isinstance(self.loop_start_s, (int, float)) and math.isfinite(self.loop_start_s)
                and self.loop_start_s >= 0):
            raise ParameterError(f"loop start must be >= 0 seconds, got {self.loop_start_s!r}")

    @property
    def loop(self) -> bool:
        """Whether the file gets a loop point."""
        return self.loop_start_s is not None


# the analysis hears every input with its peak sample at this level.  The peak picker's
# floor is absolute (dB re full scale), so quiet recordings lost their quiet partials:
# samples/speech.wav 20 dB down scored 3.67 dB against 2.89, 40 dB down 6.01, melody.wav
# 20 dB down 2.47 against 1.86.  Normalising took the 23 benchmark clips (peaks at 0.57-0.92)
# from 2.143 to 2.136 dB (adplay, `model`); at twice or four times full scale 2.126 /
# 2.123, which the lower peak floor (methods/sines.py: pick_peaks) gives instead
ANALYSIS_PEAK = 1.0
MAX_ANALYSIS_BOOST_DB = 60.0        # quieter inputs than this are mostly their noise floor


def analysis_gain(stream) -> float:
    """The factor the analysis scales ``stream`` (an open :class:`~.audio.AudioStream`) by:
    its peak to ANALYSIS_PEAK, raised by at most MAX_ANALYSIS_BOOST_DB (1.0 for silence)."""
    peak = stream.peak()
    if peak <= 0.0:
        return 1.0
    return min(ANALYSIS_PEAK / peak, 10.0 ** (MAX_ANALYSIS_BOOST_DB / 20.0))


def with_frame_rate(options: ConvertOptions, stream) -> ConvertOptions:
    """``options`` with the frame rate settled for ``stream``, an open :class:`~.audio.AudioStream`.

    Where it is left to the input (the model at quality "balanced" or
    "best"), a probe of it (:func:`probe_windows`) is analysed at 60 frames
    a second and cut into steady stretches as the pursuit would; a sound
    that changes more often than :data:`~.methods.model.AUTO_CHANGES_PER_S`
    times a second (speech, busy music) gets 90 frames a second at
    "balanced" and 120 at "best", steady sound 60.
    """
    if options.frame_rate_hz is not None:
        return options
    from .methods import model
    from .methods.pursuit import mel_power
    slow, fast = model.AUTO_FRAME_RATES_HZ[options.quality]
    changes = seconds = 0.0
    gain = np.float32(analysis_gain(stream))
    for a, b in probe_windows(int(stream.n_samples)):
        x = stream.window(a, b - a) * gain
        analyser = FrameAnalyser(frame_times(x.size, slow), n_samples=x.size)
        power = mel_power(np.concatenate([analyser.push(x), analyser.push(None)]))
        per_s = model.changes_per_second(power, frame_rate_hz=slow,
                                         change_db=model.QUALITY[options.quality][1])
        changes += per_s * power.shape[0] / slow
        seconds += power.shape[0] / slow
    busy = seconds > 0 and changes / seconds > model.AUTO_CHANGES_PER_S
    return dataclasses.replace(options, frame_rate_hz=fast if busy else slow)


def probe_windows(n_samples: int) -> list[tuple[int, int]]:
    """The (start, end) sample ranges :func:`with_frame_rate` listens to: the first
    AUTO_PROBE_S seconds, or for an input longer than AUTO_SPREAD_ABOVE_S, AUTO_WINDOW_S
    seconds at each of AUTO_WINDOWS_AT (:mod:`~.methods.model`) of its length."""
    from .methods import model
    rate = ANALYSIS_RATE_HZ
    if n_samples <= model.AUTO_SPREAD_ABOVE_S * rate:
        return [(0, min(n_samples, int(model.AUTO_PROBE_S * rate)))]
    width = int(model.AUTO_WINDOW_S * rate)
    return [(int(f * n_samples), int(f * n_samples) + width) for f in model.AUTO_WINDOWS_AT]


def make_method(options: ConvertOptions):
    """The spectra -> voices stage for ``options.method``."""
    if options.method == "sines":
        from .methods.sines import SinesMethod
        return SinesMethod(n_voices=options.voices)
    from .methods.model import ModelMethod
    return ModelMethod(n_voices=options.voices, model_path=options.model_path,
                       quality=options.quality, frame_rate_hz=options.frame_rate_hz)


def frame_times(n_samples: int, frame_rate_hz: float) -> np.ndarray:
    """Centre (in 44.1 kHz samples) of every analysis frame covering ``n_samples``."""
    hop = ANALYSIS_RATE_HZ / frame_rate_hz
    n_frames = max(1, int(math.ceil(n_samples / hop))) if n_samples > 0 else 0
    return np.rint(np.arange(n_frames) * hop).astype(np.int64)


# Register updates stay at least this many VGM samples apart: 12 updates a frame at 60
# frames/s, 8 at 90, 6 at 120.  Players on the Nuked core (adplay, libvgm) queue writes and
# apply one every 2 native samples (24,858 a second; :mod:`.opl3.queue`); busy sound writes
# 22-30 registers per update, so closer updates overflow the queue and the write governor
# has to thin their level changes.  `python benchmarks/run.py queue --player adplay`: 40
# samples apart (12 updates a frame at 90 frames/s), governed, the speech clips score about
# what they do at 60 (2.77-2.97 dB against 2.76-2.93; ungoverned 3.09-3.64), for 13%
# more writes.  Also keeps each wait above AdPlug's minimum (vgm.MIN_WAIT_SAMPLES, 40; a test
# checks it stays above).
MIN_UPDATE_SAMPLES = 60


def update_steps(frame_rate_hz: float, substeps: int) -> int:
    """Register updates per frame: ``substeps``, as far as updates stay
    >= MIN_UPDATE_SAMPLES VGM samples apart (at least one per frame)."""
    hop = ANALYSIS_RATE_HZ / frame_rate_hz
    return max(1, min(int(substeps), int(hop // MIN_UPDATE_SAMPLES)))


def update_times(centres: np.ndarray, frame_rate_hz: float, steps: int) -> np.ndarray:
    """VGM time of each update (``steps`` per frame, evenly over the hop from its first write)."""
    hop = ANALYSIS_RATE_HZ / frame_rate_hz
    t = (centres[:, None] - hop / 2) + np.arange(steps)[None, :] * (hop / steps)
    return np.maximum(np.rint(t), 0).astype(np.int64).ravel()


# the input's energy around each register update is read through this window (samples at
# 44.1 kHz, Hann squared): long enough to hold a few periods of a low voice, so it does not
# follow the waveform (512, in a first version that lowered every update below the
# level the frames interpolate: speech_gb 3.78 -> 5.5 dB; here 768 and 1536 scored worse
# than 1024 on the 9 clips it changes), short enough to place an onset
ONSET_WINDOW = 1024


def update_offsets(frame_rate_hz: float, steps: int) -> np.ndarray:
    """(steps,) where the middle of each of a frame's updates lies (:func:`update_times`),
    in samples from the frame's centre."""
    hop = ANALYSIS_RATE_HZ / frame_rate_hz
    return (-0.5 + (np.arange(steps) + 0.5) / steps) * hop


def energy_weights(offsets: np.ndarray) -> np.ndarray:
    """(WINDOW, 1 + steps) weights that turn a frame's squared samples into energies.

    Column 0: the analysis window squared, normalised -- the mean power the
    frame's spectrum reports.  Column 1 + j: the power around the middle of
    update j (``offsets``: :func:`update_offsets`), through a Hann window of
    ONSET_WINDOW samples squared, cut to the frame and normalised; NaN where
    less than half of that window lies in the frame (frame rates under 43 Hz).
    """
    w = np.zeros((WINDOW, 1 + len(offsets)), np.float64)
    w[:, 0] = analysis_window().astype(np.float64) ** 2
    w[:, 0] /= w[:, 0].sum()
    short = np.hanning(ONSET_WINDOW + 2)[1:-1] ** 2
    t = np.arange(WINDOW)
    for j, off in enumerate(offsets):
        k = np.rint(t - (WINDOW // 2 + off) + ONSET_WINDOW / 2).astype(np.int64)   # short window
        inside = (k >= 0) & (k < ONSET_WINDOW)
        w[inside, 1 + j] = short[k[inside]]
        total = w[:, 1 + j].sum()
        w[:, 1 + j] = w[:, 1 + j] / total if total >= 0.5 * short.sum() else np.nan
    return w.astype(np.float32)


class FrameAnalyser:
    """Cuts a stream of audio blocks into centred frames and their magnitude spectra.

    With ``update_offsets`` (:func:`update_offsets`), each block's frames
    also leave their energies (n_frames, 1 + steps) in :attr:`energies`
    (:func:`energy_weights`), for :func:`~.methods.base.onset_gains`.
    """

    def __init__(self, centres: np.ndarray, *, n_samples: int | None = None,
                 update_offsets: np.ndarray | None = None):
        self.centres = centres
        self.update_offsets = update_offsets
        self.energy = None if update_offsets is None else energy_weights(update_offsets)
        self.energies: list[np.ndarray] = []
        self.next_frame = 0
        self.buffer = np.zeros(WINDOW // 2, np.float32)   # left zero padding
        self.buffer_start = -WINDOW // 2                  # sample index of buffer[0]
        self.window = analysis_window()
        self.n_samples = int(n_samples) if n_samples is not None else None
        self.freqs_hz = np.fft.rfftfreq(N_FFT, 1.0 / ANALYSIS_RATE_HZ)
        # the last frame that lay inside the input (samples, spectrum), for edge frames that
        # come in a later block than every inside frame (the end of most inputs)
        self.inside: tuple[np.ndarray, np.ndarray] | None = None

    def push(self, block: np.ndarray | None) -> np.ndarray:
        """Add a block (None = end of input); return the spectra of frames now complete."""
        if block is not None:
            self.buffer = np.concatenate([self.buffer, block.astype(np.float32)])
        else:
            self.buffer = np.concatenate([self.buffer, np.zeros(WINDOW, np.float32)])
        end = self.buffer_start + self.buffer.size
        # the frames whose window ends within the buffer (centres ascend)
        last = max(self.next_frame, int(np.searchsorted(self.centres, end - WINDOW // 2, side="right")))
        if last == self.next_frame:
            return np.zeros((0, N_FFT // 2 + 1), np.float32)
        starts = self.centres[self.next_frame:last] - WINDOW // 2 - self.buffer_start
        first_abs = starts + self.buffer_start
        # each frame one row gathered from a strided view of the buffer (no index table)
        frames = np.lib.stride_tricks.sliding_window_view(self.buffer, WINDOW)[starts]
        self.next_frame = last
        keep_from = (self.centres[last] - WINDOW // 2 - self.buffer_start
                     if last < self.centres.size else self.buffer.size)
        keep_from = int(max(0, min(keep_from, self.buffer.size)))
        self.buffer = self.buffer[keep_from:]
        self.buffer_start += keep_from
        if self.energy is not None:
            # with the frames' DC, which only the spectra drop (without it, adplay:
            # opl_song_doofus 2.90 -> 3.04 dB, the other clips within 0.02)
            energy = np.square(frames) @ self.energy
            if self.n_samples is not None:
                # an update centred outside the input has nothing to compare (the samples
                # beyond its ends, zero in the frame, count as silence for the others)
                mid = (first_abs + WINDOW // 2)[:, None] + self.update_offsets[None, :]
                energy[:, 1:][(mid < 0) | (mid >= self.n_samples)] = np.nan
            self.energies.append(energy)
        # frames that reach past either end of the input take the spectrum of the nearest
        # frame that lies inside, scaled to the energy of the part that exists: a cut would
        # read as a burst of partials.  Worked out before the spectra, which window the
        # frames in place (``frames`` is this call's own copy)
        inside = (np.zeros(0, np.int64) if self.n_samples is None
                  else np.flatnonzero((first_abs >= 0) & (first_abs + WINDOW <= self.n_samples)))
        edges = [] if self.n_samples is None else self._edge_frames(frames, first_abs, inside)
        last_inside = int(inside[-1]) if inside.size else None
        samples = None if last_inside is None else frames[last_inside].copy()
        mag = analysis_spectra(frames, window=self.window, overwrite=True)
        for i, j, gain, part in edges:
            if j is not None:
                mag[i] = (self.inside[1] if j < 0 else mag[j]) * gain
            else:
                mag[i] = 0.0 if part is None else analysis_spectra(part[None, :])[0]
        if last_inside is not None:
            self.inside = (samples, mag[last_inside].copy())
        return mag

    def _edge_frames(self, frames: np.ndarray, first: np.ndarray, inside: np.ndarray) -> list:
        """(frame, nearest inside frame or None, gain, own samples or None) of the frames that
        reach past either end of the input (``first``: their first samples' indices;
        ``inside``: the indices of those that do not).  The nearest inside frame is -1 where
        it came in an earlier block (:attr:`inside`)."""
        edge = np.ones(len(frames), bool)
        edge[inside] = False
        out = []
        for i in np.flatnonzero(edge):
            lo = max(0, -first[i])
            hi = min(WINDOW, self.n_samples - first[i])
            part = frames[i, lo:hi] if hi > lo else frames[i, :0]
            if part.size < 64:
                out.append((i, None, 0.0, None))                 # silent
                continue
            if inside.size or self.inside is not None:
                j = inside[np.argmin(np.abs(inside - i))] if inside.size else -1
                ref = frames[j, lo:hi] if j >= 0 else self.inside[0][lo:hi]
                e_ref = float(np.sum(ref * ref))
                gain = np.sqrt(float(np.sum(part * part)) / e_ref) if e_ref > 0 else 0.0
                out.append((i, j, min(gain, 4.0), None))
            else:
                out.append((i, None, 0.0, part.copy()))
        return out


@dataclass
class Analysis:
    """What :func:`analyse` found: the voice table, frame centres and, for the
    loudness check, the input's mel power on every ``level_stride``-th frame."""

    voices: VoiceFrames
    centres: np.ndarray
    level_power: np.ndarray         # (frames judged, N_MELS)
    level_stride: int
    frame_rate_hz: float = 60.0     # the rate the frames were analysed at
    # (n_frames, 1 + steps) the input's power per frame and around each of its register
    # updates (:func:`energy_weights`); None: no onset gains
    update_energy: np.ndarray | None = None
    # how levels pass a held channel's pitch jump (the method's; :func:`subdivide`)
    jump_share: float | None = None


def analyse(stream, options: ConvertOptions, *, progress: Callable[[int], None] | None = None
            ) -> Analysis:
    """Run the method over the whole stream: the voice table, frame centres, level reference.

    The voices are chosen on the mono mix.  With ``options.stereo`` and a
    two-channel input, the left and right channels are analysed alongside
    and each note is panned (:mod:`.methods.pan`).  With
    ``options.split_sides`` too, each side is converted on its own instead,
    on half the channels (the left one more where they are odd), which play
    on that side only: what a hard-panned source needs, where voices chosen
    on the mono mix serve the quieter side poorly (the left / right of
    ``benchmarks/run.py stereo``'s hard-panned mix: see the README), and
    what sound alike on both sides loses, its voices played twice.
    Everything is analysed scaled by :func:`analysis_gain` (the input's peak
    at full scale), so the voices' amplitudes and the level reference are in
    those units.
    """
    from .methods import pan
    from .methods.pursuit import mel_power
    options = with_frame_rate(options, stream)
    centres = frame_times(stream.n_samples, options.frame_rate_hz)
    stride = stride_for(centres.size)
    level_power: list[np.ndarray] = []
    done = 0                                            # frames analysed so far
    steps = update_steps(options.frame_rate_hz, options.substeps)
    analyser = FrameAnalyser(centres, n_samples=stream.n_samples,
                             update_offsets=update_offsets(options.frame_rate_hz, steps))
    stereo = bool(options.stereo) and stream.n_channels == 2
    split = stereo and options.split_sides
    if split:                                           # one method per side, on its channels
        n_left = (options.voices + 1) // 2
        methods = [make_method(dataclasses.replace(options, voices=k, split_sides=False))
                   for k in (n_left, options.voices - n_left)]
        outputs = np.repeat(np.array([R.OUT_LEFT, R.OUT_RIGHT], np.uint8),
                            [n_left, options.voices - n_left])
    else:
        method = make_method(options)
    sides = [FrameAnalyser(centres, n_samples=stream.n_samples) for _ in range(2)] if stereo else []
    parts: list[VoiceFrames] = []
    powers: list[np.ndarray] = []

    def step(block, mono):
        nonlocal done
        mag = analyser.push(mono)
        side_mags = [a.push(None if block is None else block[:, j + 1]) for j, a in enumerate(sides)]
        if mag.shape[0]:
            power = mel_power(mag)                      # the block's one mel power
            if split:
                part = VoiceFrames.stack_channels([m.process(sm, analyser.freqs_hz)
                                                   for m, sm in zip(methods, side_mags)])
                part.outputs = np.broadcast_to(outputs, part.fnum.shape).copy()
            else:
                part = method.process(mag, analyser.freqs_hz, power=power)
            parts.append(part)
            first = (-done) % stride                    # the block's first frame on the stride
            level_power.append(power[first::stride])
            done += mag.shape[0]
            if stereo and not split:
                powers.append(pan.side_power(part, mag, *side_mags, analyser.freqs_hz))

    gain = np.float32(analysis_gain(stream))
    for block in stream.blocks(sides=stereo):
        block *= gain
        step(block, block[:, 0] if stereo else block)
        if progress:
            progress(len(block))
    step(None, None)
    if not parts:
        return Analysis(VoiceFrames.empty(0, options.voices), centres, np.zeros((0, 0)), stride,
                        options.frame_rate_hz)
    voices = VoiceFrames.concatenate(parts)
    if stereo and not split:
        voices = pan.route(voices, np.concatenate(powers))
    jump_share = (methods[0] if split else method).jump_share
    return Analysis(voices, centres, np.concatenate(level_power), stride, options.frame_rate_hz,
                    np.concatenate(analyser.energies), jump_share)


def register_events(voices: VoiceFrames, centres: np.ndarray, options: ConvertOptions, *,
                    chunk: int = 4096, reference: tuple[np.ndarray, int] | None = None,
                    update_energy: np.ndarray | None = None,
                    governor: WriteGovernor | None = None, jump_share: float | None = None):
    """Yield (time_vgm, reg, value) arrays chunk by chunk: quantised, minimal writes.

    Each frame becomes :func:`update_steps` register updates (:func:`subdivide`,
    ``chunk`` updates at a time with two frames of context either side, so long
    inputs never hold the whole subdivided table).  With a loop
    (``options.loop_start_s``), ``None`` is yielded before the first update
    at or after the loop start, and that update writes every register of
    every channel (the chip may hold anything when a player loops back to
    it), not only those it changes.  ``update_energy`` (:attr:`Analysis.update_energy`,
    for these frames and this many updates per frame) quietens the updates
    before an onset and raises its attack (:func:`~.methods.base.onset_gains`).
    ``governor`` (default: a new one) fits the writes to the player's write
    queue (:class:`~.opl3.queue.WriteGovernor`).  ``jump_share``: how levels
    pass a held channel's pitch jump (:func:`~.methods.base.subdivide`).
    """
    gain = loudness_gain(voices, gain_db=options.gain_db, reference=reference)
    steps = update_steps(options.frame_rate_hz, options.substeps)
    energy = None
    if update_energy is not None and update_energy.shape == (voices.n_frames, 1 + steps):
        energy = update_energy
        loudest = float(np.nanmax(energy[:, 0])) if energy.size else 0.0
        attack = int(round(ONSET_ATTACK_S * options.frame_rate_hz * steps))
    back = 0 if energy is None else -(-attack // steps)             # frames, rounded up
    times = update_times(centres, options.frame_rate_hz, steps)
    previous_frames = None
    previous_image = None
    governor = governor or WriteGovernor()
    used = np.zeros(R.N_CHANNELS, bool)
    loop_update = -1 if not options.loop else loop_update_index(times, options.loop_start_s)
    n = voices.n_frames
    per_chunk = max(1, chunk // steps)                 # frames per chunk: ``chunk`` updates
    for lo in range(0, n, per_chunk):
        hi = min(lo + per_chunk, n)
        # two frames either side for subdivide (a glide's steps before and after the one at
        # the chunk's edge); on the left as many more as the attacks look back
        a, b = max(lo - 2 - back, 0), min(hi + 2, n)
        part = subdivide(voices.rows(slice(a, b)), steps, jump_share=jump_share)
        if energy is not None:
            # what each update plays, relative to its frame's own voices (from frame a on,
            # so an attack sees the drops before it in the chunk before)
            c = max(lo - back, 0)
            ctx = part.rows(slice((c - a) * steps, (hi - a) * steps))
            own = np.square(voices.rows(slice(c, hi)).sounding_amplitudes(), dtype=np.float64).sum(axis=1)
            now = np.square(ctx.sounding_amplitudes(), dtype=np.float64).sum(axis=1).reshape(hi - c, steps)
            with np.errstate(invalid="ignore", divide="ignore"):
                played = np.where(own[:, None] > 0, now / own[:, None], 1.0)
            g = onset_gains(energy[c:hi], played, loudest=loudest, attack_updates=attack)[lo - c:]
            part = part.rows(slice((lo - a) * steps, (hi - a) * steps))
            part.amp1 = part.amp1 * g.reshape(-1, 1)
            part.amp2 = _boosted(part.amp2, g.reshape(-1, 1), FULL_SCALE / gain)
        else:
            part = part.rows(slice((lo - a) * steps, (hi - a) * steps))
        frames = quantise(part, gain=gain, previous=previous_frames)
        full = _pad_channels(frames)
        images = R.channel_images(full, lazy=not options.loop, used_before=used)
        used |= full.key.any(axis=0)
        t = times[lo * steps:hi * steps]
        after = times[hi * steps] if hi < n else None  # the next chunk's first update
        k = loop_update - lo * steps                    # the loop's first update, in this chunk
        if 0 <= k < len(t):
            if k:
                f, reg, val = governor.writes(images[:k], t[:k], previous=previous_image,
                                              next_time_vgm=t[k])
                yield t[f], reg, val
            yield None
            # the loop's first update from an unknown state, the rest from it as usual
            f, reg, val = governor.writes(images[k:k + 1], t[k:k + 1], write_all=True,
                                          previous=R.unknown_state(images[k]),
                                          next_time_vgm=t[k + 1] if k + 1 < len(t) else after)
            yield t[k + f], reg, val
            f, reg, val = governor.writes(images[k + 1:], t[k + 1:], previous=images[k],
                                          next_time_vgm=after, last=after is None)
            yield t[k + 1 + f], reg, val
        else:
            f, reg, val = governor.writes(images, t, previous=previous_image,
                                          next_time_vgm=after, last=after is None)
            yield t[f], reg, val
        previous_frames = frames
        previous_image = images[-1]


def _boosted(amp: np.ndarray, g: np.ndarray, top: float) -> np.ndarray:
    """``amp * g``, but an onset's raise (``g`` > 1) takes no operator past ``top`` (TL 0)
    unless it was there already.  (Boosts were tuned while TL 0 capped every operator;
    operator 1's fill-in (:func:`~.methods.base.helper_levels`) now plays above it.)"""
    out = amp * g
    return np.where(g > 1, np.minimum(out, np.maximum(amp, top)), out).astype(amp.dtype)


def loop_update_index(update_times_vgm: np.ndarray, loop_start_s: float) -> int:
    """The first update at or after ``loop_start_s``; ParameterError if there is none."""
    k = int(np.searchsorted(update_times_vgm, round(loop_start_s * ANALYSIS_RATE_HZ)))
    if k >= len(update_times_vgm):
        end_s = (update_times_vgm[-1] if len(update_times_vgm) else 0) / ANALYSIS_RATE_HZ
        raise ParameterError(f"loop start {loop_start_s:g} s is not before the last update "
                             f"of the conversion ({end_s:.3f} s)")
    return k


def _pad_channels(frames: R.ChannelFrames) -> R.ChannelFrames:
    """Extend a frame table with fewer than 18 channels by silent channels."""
    n, n_ch = frames.fnum.shape
    if n_ch == R.N_CHANNELS:
        return frames
    full = R.ChannelFrames.silent(n)
    full.rr = frames.rr
    for name in ("fnum", "block", "key", "fb", "cnt", "mult1", "mult2", "tl1", "tl2", "ws1", "ws2"):
        getattr(full, name)[:, :n_ch] = getattr(frames, name)
    if frames.outputs is not None:
        full.outputs = np.full((n, R.N_CHANNELS), R.OUT_STEREO, np.int64)
        full.outputs[:, :n_ch] = frames.outputs
    for name in ("ksl1", "ksl2"):
        if getattr(frames, name) is not None:
            a = np.zeros((n, R.N_CHANNELS), np.int64)
            a[:, :n_ch] = getattr(frames, name)
            setattr(full, name, a)
    return full


def gd3_for(options: ConvertOptions, input_name: str) -> Gd3:
    is_stdin = input_name in ("-", "") or input_name.startswith("<")
    title = options.title or ("stdin" if is_stdin else Path(input_name).stem)
    rate = "auto" if options.frame_rate_hz is None else f"{options.frame_rate_hz:g} Hz"
    notes = options.notes or f"converted by wav2vgm ({options.method}, {rate})"
    return Gd3(title=title, author=options.author, game=options.game, date=options.date,
               notes=notes)


def convert_to_writer(stream, writer: VgmWriter, options: ConvertOptions, *,
                      progress: Callable[[int], None] | None = None) -> dict:
    """Convert an open audio stream into an open :class:`VgmWriter`; returns statistics."""
    found = analyse(stream, options, progress=progress)
    return write_voices(writer, found, options, n_samples=stream.n_samples)


def write_voices(writer: VgmWriter, found: Analysis, options: ConvertOptions, *,
                 n_samples: int) -> dict:
    """A voice table (:func:`analyse`'s, or any other) -> register writes in ``writer``."""
    if options.frame_rate_hz is None:               # left to the input: the rate analysed at
        options = dataclasses.replace(options, frame_rate_hz=found.frame_rate_hz)
    voices, centres = found.voices, found.centres
    steps = update_steps(options.frame_rate_hz, options.substeps)
    frame_t = update_times(centres, options.frame_rate_hz, steps)
    n_writes = 0
    # a bad loop start fails here, before anything is written
    loop_at = frame_t[loop_update_index(frame_t, options.loop_start_s)] if options.loop else 0
    governor = WriteGovernor()
    for event in register_events(voices, centres, options,
                                 reference=(found.level_power, found.level_stride),
                                 update_energy=found.update_energy, governor=governor,
                                 jump_share=found.jump_share):
        if event is None:                           # the loop point: before this update's writes
            if options.loop_start_s > 0:            # (0: the whole file, its lead-in too)
                writer.advance_to(loop_at, ticks=frame_t)
            writer.mark_loop()
            continue
        times, regs, vals = event
        # one wait command per update, writes or not; each run of equal times one group
        writer.write_timed(times, regs, vals, ticks=frame_t)
        n_writes += len(times)
    writer.advance_to(n_samples, ticks=frame_t)                  # the updates after the last write
    return {"n_frames": voices.n_frames, "n_updates": int(frame_t.size), "n_writes": n_writes,
            "n_samples": n_samples, "frame_rate_hz": float(options.frame_rate_hz),
            "n_dropped": governor.n_dropped, "n_delayed": governor.n_delayed}
