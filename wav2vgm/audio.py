"""Any audio input -> mono float32 samples at the analysis rate, in blocks.

:func:`open_audio` opens a path, ``"-"`` (standard input) or a binary file
object with soundfile (libsndfile: WAV/W64/RF64 in integer 8/16/24/32-bit
and float 32/64-bit, FLAC, OGG, AIFF, AU, CAF, MP3, ...) and returns an
:class:`AudioStream`.  ``stream.blocks()`` yields the signal mixed down to
mono (mean of the channels) and resampled to ``target_rate_hz`` one block of
about ``block_seconds`` at a time, so memory does not grow with the length of
the file; ``stream.blocks(sides=True)`` yields the left and right channels
beside that mono mix (for stereo panning).

Resampling uses :func:`wav2vgm.resample.resample_poly` with the reduced fraction
``up / down = target_rate_hz / source_rate_hz``.  Blocks start on input
indices that are multiples of ``down`` and are read with enough context on
both sides for the anti-aliasing filter, so the concatenated blocks equal
``resample_poly(whole_signal, up, down)`` up to floating-point rounding.

Every unusable input raises :class:`~wav2vgm.errors.AudioError` with a
one-line message; :func:`write_wav` raises
:class:`~wav2vgm.errors.OutputError` and never leaves a partial file behind.
"""

from __future__ import annotations

import io
import math
import os
import sys
import uuid
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Union

import numpy as np
import soundfile as sf

from .errors import AudioError, OutputError, ParameterError
from .resample import CONTEXT_MARGIN, lowpass_filter, resample_poly, resampled_blocks

__all__ = [
    "AUDIO_SUFFIXES",
    "AudioStream",
    "open_audio",
    "load_audio",
    "write_wav",
]

#: File name suffixes (lower case) treated as audio when scanning a folder.
AUDIO_SUFFIXES = frozenset({
    ".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".au", ".snd",
    ".w64", ".caf", ".rf64", ".mp3",
})

Source = Union[str, "os.PathLike[str]", BinaryIO]

# Exceptions soundfile / libsndfile / the OS may raise while opening or reading.
_READ_ERRORS = (RuntimeError, sf.LibsndfileError, ValueError, OSError,
                EOFError, TypeError)


def _one_line(text: object) -> str:
    """``text`` as one line: whitespace runs (newlines included) collapsed."""
    return " ".join(str(text).split())


def _reason(exc: BaseException) -> str:
    """A short one-line reason for a soundfile/OS exception."""
    if isinstance(exc, sf.LibsndfileError):
        text = getattr(exc, "error_string", "") or str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return _one_line(text).rstrip(".") or type(exc).__name__


def _check_rate(value: object, what: str) -> int:
    """``value`` as a positive int sample rate in Hz, else ParameterError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{what} must be a positive integer (Hz), got {value!r}")
    if value <= 0:
        raise ParameterError(f"{what} must be a positive integer (Hz), got {value!r}")
    return int(value)


MIN_RATE_HZ = 1000
MAX_RATE_HZ = 768000


class AudioStream:
    """An opened audio input, read as mono float32 blocks at the target rate.

    Attributes:
        name: how the input is named in messages (path, ``<stdin>``, ...).
        source_rate_hz: sample rate of the input in Hz.
        target_rate_hz: sample rate of the yielded blocks in Hz.
        n_channels: number of channels of the input (mixed down to mono).
        n_source_frames: number of frames of the input at ``source_rate_hz``.
        n_samples: exact number of mono samples :meth:`blocks` yields in all,
            ``ceil(n_source_frames * target_rate_hz / source_rate_hz)``
            (the output length of :func:`~wav2vgm.resample.resample_poly`);
            equal to ``n_source_frames`` when the rates match.
        duration_s: length of the input in seconds
            (``n_source_frames / source_rate_hz``).
        subtype: soundfile subtype string of the input (``"PCM_16"``, ...).
        format: soundfile major format string (``"WAV"``, ``"FLAC"``, ...).
        block_seconds: requested length of one block in seconds.
    """

    def __init__(self, sound_file: sf.SoundFile, name: str, *,
                 target_rate_hz: int, block_seconds: float,
                 owned: BinaryIO | None = None) -> None:
        self._sf = sound_file
        self._owned = owned
        self.name = name
        self.source_rate_hz = int(sound_file.samplerate)
        if not MIN_RATE_HZ <= self.source_rate_hz <= MAX_RATE_HZ:
            raise AudioError(f"unsupported sample rate {self.source_rate_hz} Hz in {name} "
                             f"(supported: {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz)")
        self.target_rate_hz = int(target_rate_hz)
        self.n_channels = int(sound_file.channels)
        self.n_source_frames = int(sound_file.frames)
        self.subtype = str(sound_file.subtype)
        self.format = str(sound_file.format)
        self.block_seconds = float(block_seconds)
        g = math.gcd(self.target_rate_hz, self.source_rate_hz)
        self._up = self.target_rate_hz // g
        self._down = self.source_rate_hz // g
        # ceil(n * up / down) in exact integer arithmetic.
        self.n_samples = -(-self.n_source_frames * self._up // self._down)
        self.duration_s = self.n_source_frames / self.source_rate_hz
        self._filter: np.ndarray | None = None
        self._peak: float | None = None
        self._closed = False

    # -- context manager -------------------------------------------------
    def __enter__(self) -> "AudioStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"AudioStream({self.name!r}, {self.source_rate_hz} Hz -> "
                f"{self.target_rate_hz} Hz, {self.n_channels} ch, "
                f"{self.n_source_frames} frames, {self.subtype})")

    def close(self) -> None:
        """Close the underlying file; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sf.close()
        except _READ_ERRORS:
            pass
        if self._owned is not None:
            try:
                self._owned.close()
            except OSError:
                pass

    # -- reading ---------------------------------------------------------
    def _resample_filter(self) -> np.ndarray:
        """The FIR filter :func:`resample_poly` designs for (up, down)."""
        if self._filter is None:
            self._filter = lowpass_filter(self._up, self._down)
        return self._filter

    def _read_frames(self, count: int, start: int, *, sides: bool = False) -> np.ndarray:
        """Read ``count`` frames (mono float64) that begin at frame ``start``.

        ``sides``: (count, 3) columns mono, left, right instead (see :meth:`blocks`).

        Raises AudioError on a read failure, a short read (truncated data)
        or a non-finite sample.
        """
        try:
            data = self._sf.read(count, dtype="float64", always_2d=True)
        except _READ_ERRORS as exc:
            t = start / self.source_rate_hz
            raise AudioError(f"cannot read audio from {self.name} at {t:.3f} s: "
                             f"{_reason(exc)}") from None
        got = data.shape[0]
        if got:
            finite = np.isfinite(data).all(axis=1)
            if not finite.all():
                bad = start + int(np.argmin(finite))
                raise AudioError(
                    f"non-finite sample (NaN or inf) at "
                    f"{bad / self.source_rate_hz:.3f} s in {self.name}")
        if got < count:
            end_s = (start + got) / self.source_rate_hz
            raise AudioError(
                f"audio data ends at {end_s:.3f} s but the header promises "
                f"{self.duration_s:.3f} s in {self.name} (truncated file?)")
        mono = data[:, 0] if self.n_channels == 1 else data.mean(axis=1)
        if not sides:
            return mono
        if self.n_channels == 2:
            return np.column_stack([mono, data[:, 0], data[:, 1]])
        return np.column_stack([mono, mono, mono])

    def _rewind(self) -> int:
        """Seek to the input's first frame; returns how many frames it has.

        Raises AudioError when the stream is closed or cannot seek.
        """
        if self._closed:
            raise AudioError(f"audio stream {self.name} is closed")
        n = self.n_source_frames
        if n > 0:
            try:
                self._sf.seek(0)
            except _READ_ERRORS as exc:
                raise AudioError(f"cannot read audio from {self.name}: "
                                 f"{_reason(exc)}") from None
        return n

    def _block_frames(self) -> int:
        """Input frames per block: a positive multiple of ``down``."""
        per_block = self.block_seconds * self.source_rate_hz
        return max(1, int(round(per_block / self._down))) * self._down

    def blocks(self, *, sides: bool = False) -> Iterator[np.ndarray]:
        """Yield the signal as float32 mono blocks at ``target_rate_hz``.

        Each block holds about ``block_seconds`` of audio; together they
        hold exactly :attr:`n_samples` samples.  A file with no frames
        yields nothing.  Iterating again starts over from the beginning.

        ``sides=True`` yields (n, 3) blocks instead: the mono mix (the same
        samples as with ``sides=False``), the left and the right channel of
        a two-channel input (inputs with another channel count: the mono
        mix again in both).

        Raises:
            AudioError: the data cannot be decoded, ends early, or holds a
                NaN or infinite sample (the message gives its time in s).
        """
        n = self._rewind()
        if n <= 0:
            return
        block = self._block_frames()
        if self._up == self._down:
            for a in range(0, n, block):
                count = min(block, n - a)
                yield self._read_frames(count, a, sides=sides).astype(np.float32)
            return
        yield from self._resampled_blocks(n, block, sides)

    def peak(self) -> float:
        """The largest absolute sample of what :meth:`blocks` reads (0.0 if empty): the
        mono mix and, of a two-channel input, each side (``blocks(sides=True)``).

        One pass over the input at its own rate (nothing is resampled); the
        result is kept, so asking again costs nothing.

        Raises:
            AudioError: as :meth:`blocks`.
        """
        if self._peak is not None:
            return self._peak
        n = self._rewind()
        block = self._block_frames()
        peak = 0.0
        for a in range(0, n, block):
            x = self._read_frames(min(block, n - a), a, sides=self.n_channels > 1)
            peak = max(peak, float(x.max(initial=0.0)), -float(x.min(initial=0.0)))   # no |x| copy
        self._peak = peak
        return peak

    def window(self, start: int, count: int) -> np.ndarray:
        """``count`` mono float32 samples at ``target_rate_hz`` from sample ``start`` on.

        Read from there directly (the range is clipped to the input), for a
        look at part of a long input: the same samples :meth:`blocks` yields
        there (resampled with the filter's full reach, in the same phase).

        Raises:
            AudioError: as :meth:`blocks`, or when the input cannot seek.
        """
        if self._closed:
            raise AudioError(f"audio stream {self.name} is closed")
        start = max(0, min(int(start), self.n_samples))
        count = max(0, min(int(count), self.n_samples - start))
        if count == 0:
            return np.zeros(0, np.float32)
        up, down = self._up, self._down
        context = 0
        if up != down:      # the filter's reach, in whole steps of ``down`` input frames
            context = -(-((self._resample_filter().size - 1) // 2 // up + CONTEXT_MARGIN) // down)
        # start on an input frame whose output position is whole (a multiple of ``down``),
        # the filter's reach before the window
        first = max(0, (start * down // up // down - context) * down)
        skip = start - first * up // down
        frames = min(self.n_source_frames - first,
                     -(-(skip + count) * down // up) + (context + 1) * down)
        try:
            self._sf.seek(first)
        except _READ_ERRORS as exc:
            raise AudioError(f"cannot read audio from {self.name}: {_reason(exc)}") from None
        x = self._read_frames(frames, first)
        if up != down:
            x = resample_poly(x, up, down, taps=self._resample_filter())
        return x[skip:skip + count].astype(np.float32)

    def _resampled_blocks(self, n: int, block: int, sides: bool) -> Iterator[np.ndarray]:
        return resampled_blocks(lambda count, start: self._read_frames(count, start, sides=sides),
                                n, self._up, self._down, block=block, taps=self._resample_filter())

    def read_all(self) -> np.ndarray:
        """All of :meth:`blocks` concatenated (float32 mono, ``n_samples`` long)."""
        parts = list(self.blocks())
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(parts)


def _open_soundfile(target: object, name: str) -> sf.SoundFile:
    try:
        return sf.SoundFile(target, mode="r")
    except _READ_ERRORS as exc:
        raise AudioError(f"cannot read audio from {name}: {_reason(exc)}") from None


def _read_stdin() -> bytes:
    stdin = sys.stdin
    buffer = getattr(stdin, "buffer", None) if stdin is not None else None
    if buffer is None:
        buffer = stdin
    if buffer is None or not hasattr(buffer, "read"):
        raise AudioError("cannot read audio from <stdin>: standard input is not available")
    try:
        data = buffer.read()
    except (OSError, ValueError) as exc:
        raise AudioError(f"cannot read audio from <stdin>: {_reason(exc)}") from None
    if isinstance(data, str):
        raise AudioError("cannot read audio from <stdin>: standard input is "
                         "in text mode, not binary")
    return bytes(data or b"")


def _file_object_name(fileobj: object) -> str:
    name = getattr(fileobj, "name", None)
    if isinstance(name, (str, bytes, os.PathLike)) and not isinstance(name, int):
        return os.fsdecode(name)
    return "<file object>"


def _seekable_remaining(fileobj: BinaryIO) -> int | None:
    """Bytes left in a seekable file object, or None when it cannot seek."""
    try:
        if hasattr(fileobj, "seekable") and not fileobj.seekable():
            return None
        pos = fileobj.tell()
        end = fileobj.seek(0, io.SEEK_END)
        if end is None:
            end = fileobj.tell()
        fileobj.seek(pos)
        return end - pos
    except (OSError, ValueError, AttributeError, TypeError, io.UnsupportedOperation):
        return None


def open_audio(source: Source, *, target_rate_hz: int = 44100,
               block_seconds: float = 10.0) -> AudioStream:
    """Open an audio input for block-wise reading as mono at ``target_rate_hz``.

    Args:
        source: a path (str or :class:`os.PathLike`), ``"-"`` for standard
            input (read whole into memory, then decoded), or a binary file
            object (read whole into memory if it cannot seek).
        target_rate_hz: sample rate of the yielded blocks in Hz.
        block_seconds: approximate length of one block in seconds (a block
            is rounded to a whole number of resampling periods).

    Returns:
        An :class:`AudioStream`; close it (or use ``with``) when done.

    Raises:
        AudioError: the input is missing, a folder, empty, not audio, or
            its header cannot be decoded.  A file with zero frames is
            accepted (``n_samples == 0``).
        ParameterError: ``target_rate_hz`` or ``block_seconds`` is invalid.
    """
    target_rate_hz = _check_rate(target_rate_hz, "target_rate_hz")
    if (isinstance(block_seconds, bool) or not isinstance(block_seconds, (int, float))
            or not math.isfinite(block_seconds) or block_seconds <= 0):
        raise ParameterError(
            f"block_seconds must be a positive number of seconds, got {block_seconds!r}")

    owned: BinaryIO | None = None
    if isinstance(source, (str, os.PathLike)) and os.fspath(source) == "-":
        name = "<stdin>"
        data = _read_stdin()
        if not data:
            raise AudioError(f"empty file: {name}")
        owned = io.BytesIO(data)
        target: object = owned
    elif isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if isinstance(name, bytes):
            name = os.fsdecode(name)
        path = Path(name)
        try:
            if not path.exists():
                raise AudioError(f"no such file: {name}")
            if path.is_dir():
                raise AudioError(f"is a directory, not an audio file: {name}")
            with open(path, "rb") as probe:
                first = probe.read(1)
        except OSError as exc:
            raise AudioError(f"cannot open {name}: {_reason(exc)}") from None
        if not first:
            raise AudioError(f"empty file: {name}")
        target = name
    elif hasattr(source, "read"):
        name = _file_object_name(source)
        remaining = _seekable_remaining(source)  # type: ignore[arg-type]
        if remaining is None:
            try:
                data = source.read()  # type: ignore[union-attr]
            except (OSError, ValueError) as exc:
                raise AudioError(f"cannot read audio from {name}: {_reason(exc)}") from None
            if isinstance(data, str):
                raise AudioError(f"cannot read audio from {name}: file object "
                                 "is in text mode, not binary")
            if not data:
                raise AudioError(f"empty file: {name}")
            owned = io.BytesIO(bytes(data))
            target = owned
        else:
            if remaining <= 0:
                raise AudioError(f"empty file: {name}")
            target = source
    else:
        raise AudioError(f"cannot read audio from {source!r}: expected a path, "
                         f"'-' or a binary file object")

    sound_file = _open_soundfile(target, name)
    try:
        rate = int(sound_file.samplerate)
        channels = int(sound_file.channels)
        frames = int(sound_file.frames)
        if rate <= 0:
            raise AudioError(f"cannot read audio from {name}: sample rate {rate} Hz")
        if channels <= 0:
            raise AudioError(f"cannot read audio from {name}: {channels} channels")
        if frames < 0:
            raise AudioError(f"cannot read audio from {name}: unknown length")
        return AudioStream(sound_file, name, target_rate_hz=target_rate_hz,
                           block_seconds=float(block_seconds), owned=owned)
    except BaseException:
        try:
            sound_file.close()
        except _READ_ERRORS:
            pass
        raise


def load_audio(source: Source, *, target_rate_hz: int = 44100) -> tuple[np.ndarray, int]:
    """Read a whole input as mono float32 at ``target_rate_hz``.

    Returns:
        ``(samples, rate_hz)``: ``samples`` has ``n_samples`` float32
        values, ``rate_hz == target_rate_hz``.

    Raises:
        AudioError: as :func:`open_audio` and :meth:`AudioStream.blocks`.
    """
    with open_audio(source, target_rate_hz=target_rate_hz) as stream:
        return stream.read_all(), stream.target_rate_hz


_INTEGER_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32",
                               "ULAW", "ALAW"})


def _prepare_samples(samples: object) -> np.ndarray:
    try:
        array = np.asarray(samples)
    except (ValueError, TypeError) as exc:
        raise ParameterError(f"samples must be a numeric array: {_one_line(exc)}") from None
    if array.ndim not in (1, 2):
        raise ParameterError(
            f"samples must have shape (n,) or (n, channels), got {array.shape}")
    if array.ndim == 2 and array.shape[1] < 1:
        raise ParameterError(f"samples must have at least one channel, got {array.shape}")
    if array.dtype == np.int16 or array.dtype == np.int32:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ParameterError(f"samples must be real float or int16, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.integer):
        raise ParameterError(
            f"integer samples must be int16 or int32, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64 if array.dtype == np.float64
                                else np.float32)


def write_wav(path: Union[str, "os.PathLike[str]"], samples: object, rate_hz: int, *,
              subtype: str = "PCM_16") -> None:
    """Write ``samples`` to a WAV file atomically.

    The data is written to a temporary file in the destination folder and
    moved over ``path`` with :func:`os.replace`, so a failure never leaves a
    half-written file.  ``"-"`` writes the WAV bytes to standard output.

    Args:
        path: destination file, or ``"-"`` for standard output.
        samples: shape ``(n_samples,)`` (mono) or ``(n_samples, channels)``,
            float in [-1, 1] (clipped for integer subtypes) or int16/int32.
        rate_hz: sample rate in Hz.
        subtype: soundfile subtype (``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``...).

    Raises:
        OutputError: the file cannot be written (one-line message).
        ParameterError: bad ``samples``, ``rate_hz`` or ``subtype``.
    """
    data = _prepare_samples(samples)
    write_wav_blocks(path, [data], rate_hz, channels=1 if data.ndim == 1 else data.shape[1],
                     subtype=subtype)


def write_wav_blocks(path: Union[str, "os.PathLike[str]"], blocks: Iterable[object],
                     rate_hz: int, *, channels: int, subtype: str = "PCM_16") -> None:
    """:func:`write_wav` of the concatenation of ``blocks`` (each as its ``samples``, with
    ``channels`` channels), written as they come: a long signal never sits in memory
    whole (except for ``"-"``, whose WAV header needs the length before the data).
    The same atomic replace: nothing is left at ``path`` if a block fails to come.
    """
    rate_hz = _check_rate(rate_hz, "rate_hz")
    if not isinstance(subtype, str) or not sf.check_format("WAV", subtype):
        raise ParameterError(f"subtype {subtype!r} cannot be written to a WAV file")
    clip = subtype.upper() in _INTEGER_SUBTYPES

    def write_all(target) -> None:
        with sf.SoundFile(target, "w", rate_hz, int(channels), subtype, format="WAV") as f:
            for block in blocks:
                data = _prepare_samples(block)
                if clip and np.issubdtype(data.dtype, np.floating):
                    data = np.clip(np.nan_to_num(data, nan=0.0), -1.0, 1.0)
                f.write(data)

    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if name == "-":
        bio = io.BytesIO()
        try:
            write_all(bio)
        except _READ_ERRORS as exc:
            raise OutputError(f"cannot write WAV to <stdout>: {_reason(exc)}") from None
        try:
            out = getattr(sys.stdout, "buffer", sys.stdout)
            out.write(bio.getvalue())
            out.flush()
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            raise OutputError(f"cannot write WAV to <stdout>: {_reason(exc)}") from None
        return

    dest = Path(name)
    if dest.is_dir():
        raise OutputError(f"cannot write {name}: is a directory")
    folder = dest.parent
    tmp: Path | None = None
    try:
        # Created with mode 0o666 so the umask applies, as for an ordinary file.
        while True:
            tmp = folder / f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
        with os.fdopen(fd, "wb") as handle:
            write_all(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
        tmp = None
    except (OSError, RuntimeError, sf.LibsndfileError, ValueError, TypeError) as exc:
        raise OutputError(f"cannot write {name}: {_reason(exc)}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
