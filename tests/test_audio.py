"""Tests for wav2vgm.audio: decoding, mixing, block-wise resampling, errors."""

from __future__ import annotations

import io
import math
import os
import sys

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from wav2vgm.audio import (
    AUDIO_SUFFIXES,
    AudioStream,
    load_audio,
    open_audio,
    write_wav,
    write_wav_blocks,
)
from wav2vgm.errors import AudioError, InputError, OutputError, ParameterError

TARGET_HZ = 44100


def sine(freq_hz: float, rate_hz: int, seconds: float, channels: int = 1,
         amp: float = 0.5) -> np.ndarray:
    """A sine of ``freq_hz`` on every channel, shape (n, channels)."""
    n = int(round(seconds * rate_hz))
    t = np.arange(n) / rate_hz
    x = amp * np.sin(2 * np.pi * freq_hz * t)
    return np.repeat(x[:, None], channels, axis=1)


def dominant_hz(x: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum)) * rate_hz / len(x)


def expected_len(n_source: int, source_hz: int, target_hz: int = TARGET_HZ) -> int:
    return -(-n_source * target_hz // source_hz)


def whole_resample(x_mono: np.ndarray, source_hz: int, target_hz: int = TARGET_HZ):
    if source_hz == target_hz:
        return x_mono
    g = math.gcd(source_hz, target_hz)
    return resample_poly(x_mono.astype(np.float64), target_hz // g, source_hz // g)


def assert_one_line(exc: BaseException, *needles: str) -> str:
    msg = str(exc)
    assert "\n" not in msg and "\r" not in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


# --------------------------------------------------------------- formats ---

WAV_SUBTYPES = ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"]


@pytest.mark.parametrize("subtype", WAV_SUBTYPES)
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_wav_subtypes_and_channels(tmp_path, subtype, channels):
    path = tmp_path / f"s_{subtype}_{channels}.wav"
    x = sine(1000.0, 48000, 0.5, channels)
    sf.write(path, x, 48000, subtype=subtype)
    with open_audio(path) as stream:
        assert isinstance(stream, AudioStream)
        assert stream.source_rate_hz == 48000
        assert stream.target_rate_hz == TARGET_HZ
        assert stream.n_channels == channels
        assert stream.subtype == subtype
        assert stream.n_samples == expected_len(len(x), 48000)
        assert stream.duration_s == pytest.approx(0.5)
        y = stream.read_all()
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == stream.n_samples
    assert dominant_hz(y, TARGET_HZ) == pytest.approx(1000.0, abs=3.0)
    assert np.max(np.abs(y[2000:-2000])) == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("rate_hz", [8000, 11025, 22050, 32000, 44100, 48000, 96000, 192000])
def test_rates_keep_frequency(tmp_path, rate_hz):
    path = tmp_path / "r.wav"
    x = sine(1000.0, rate_hz, 0.4, 2)
    sf.write(path, x, rate_hz, subtype="PCM_16")
    y, rate = load_audio(path)
    assert rate == TARGET_HZ
    assert len(y) == expected_len(len(x), rate_hz)
    assert dominant_hz(y, TARGET_HZ) == pytest.approx(1000.0, abs=3.0)


@pytest.mark.parametrize("fmt,ext,subtype,exact", [
    ("FLAC", ".flac", "PCM_16", True),
    ("FLAC", ".flac", "PCM_24", True),
    ("AIFF", ".aiff", "PCM_16", True),
    ("AIFF", ".aif", "PCM_24", True),
    ("AU", ".au", "PCM_16", True),
    ("W64", ".w64", "FLOAT", True),
    ("CAF", ".caf", "PCM_16", True),
    ("RF64", ".rf64", "PCM_16", True),
    ("OGG", ".ogg", "VORBIS", False),
    ("MP3", ".mp3", "MPEG_LAYER_III", False),
])
def test_other_formats(tmp_path, fmt, ext, subtype, exact):
    if fmt not in sf.available_formats() or not sf.check_format(fmt, subtype):
        pytest.skip(f"libsndfile lacks {fmt}/{subtype}")
    assert ext in AUDIO_SUFFIXES
    path = tmp_path / f"f{ext}"
    x = sine(1000.0, 48000, 0.5, 2)
    try:
        sf.write(path, x, 48000, format=fmt, subtype=subtype)
    except (RuntimeError, sf.LibsndfileError) as exc:  # encoder missing
        pytest.skip(f"cannot write {fmt}: {exc}")
    with open_audio(path) as stream:
        y = stream.read_all()
        assert len(y) == stream.n_samples
        if exact:
            assert stream.n_samples == expected_len(len(x), 48000)
        else:
            assert abs(stream.n_samples - expected_len(len(x), 48000)) < 0.1 * TARGET_HZ
    assert dominant_hz(y, TARGET_HZ) == pytest.approx(1000.0, abs=5.0)


def test_audio_suffixes_are_lower_case():
    assert isinstance(AUDIO_SUFFIXES, frozenset)
    assert all(s.startswith(".") and s == s.lower() for s in AUDIO_SUFFIXES)
    assert {".wav", ".flac", ".ogg", ".mp3", ".aiff"} <= AUDIO_SUFFIXES


def test_stereo_is_mean_of_channels(tmp_path):
    path = tmp_path / "lr.wav"
    x = np.zeros((1000, 2))
    x[:, 0] = 0.5
    x[:, 1] = -0.25
    sf.write(path, x, TARGET_HZ, subtype="FLOAT")
    y, _ = load_audio(path)
    np.testing.assert_allclose(y, 0.125, atol=1e-7)


def test_same_rate_is_not_resampled(tmp_path):
    path = tmp_path / "same.wav"
    x = np.random.default_rng(1).uniform(-0.9, 0.9, (5000, 2)).astype(np.float32)
    sf.write(path, x, TARGET_HZ, subtype="FLOAT")
    with open_audio(path, block_seconds=0.01) as stream:
        blocks = list(stream.blocks())
    assert len(blocks) > 5
    np.testing.assert_array_equal(np.concatenate(blocks), x.mean(axis=1, dtype=np.float64)
                                  .astype(np.float32))


def test_other_target_rate(tmp_path):
    path = tmp_path / "t.wav"
    x = sine(440.0, 44100, 0.5)
    sf.write(path, x, 44100)
    y, rate = load_audio(path, target_rate_hz=16000)
    assert rate == 16000 and len(y) == 8000
    assert dominant_hz(y, 16000) == pytest.approx(440.0, abs=3.0)


# ------------------------------------------------------ block resampling ---

@pytest.mark.parametrize("rate_hz", [48000, 22050, 8000, 192000, 32000, 44100, 44099])
def test_blockwise_equals_whole_resampling(tmp_path, rate_hz):
    path = tmp_path / "noise.wav"
    rng = np.random.default_rng(rate_hz)
    seconds = 0.35 if rate_hz != 44099 else 3.2   # 44099: one block is >= 1 s
    x = rng.uniform(-0.8, 0.8, (int(seconds * rate_hz), 2)).astype(np.float32)
    sf.write(path, x, rate_hz, subtype="FLOAT")
    with open_audio(path, block_seconds=0.05) as stream:
        blocks = list(stream.blocks())
        n_samples = stream.n_samples
    assert len(blocks) >= 3
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    y = np.concatenate(blocks)
    ref = whole_resample(x.astype(np.float64).mean(axis=1), rate_hz)
    assert len(y) == n_samples == len(ref) == expected_len(len(x), rate_hz)
    assert np.max(np.abs(y - ref)) < 1e-4


@pytest.mark.parametrize("n_frames", [1, 2, 159, 160, 161, 2399, 2400, 2401])
def test_block_lengths_sum_to_n_samples(tmp_path, n_frames):
    path = tmp_path / "short.wav"
    x = np.random.default_rng(n_frames).uniform(-0.5, 0.5, n_frames)
    sf.write(path, x, 48000, subtype="DOUBLE")
    with open_audio(path, block_seconds=0.01) as stream:
        lengths = [len(b) for b in stream.blocks()]
        assert sum(lengths) == stream.n_samples == expected_len(n_frames, 48000)
        y = np.concatenate(list(stream.blocks()))     # blocks() can run again
    assert np.max(np.abs(y - whole_resample(x, 48000))) < 1e-4


def test_zero_frames_yield_nothing(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros((0, 2)), 48000)
    with open_audio(path) as stream:
        assert stream.n_samples == 0 and stream.duration_s == 0
        assert list(stream.blocks()) == []
    y, rate = load_audio(path)
    assert y.shape == (0,) and y.dtype == np.float32 and rate == TARGET_HZ


def test_block_size_follows_block_seconds(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(48000 * 3), 48000)
    with open_audio(path, block_seconds=1.0) as stream:
        lengths = [len(b) for b in stream.blocks()]
    assert len(lengths) == 3
    assert all(abs(n - TARGET_HZ) <= 1 for n in lengths)


# ------------------------------------------------------- sources ---

def test_stdin(tmp_path, monkeypatch):
    x = sine(1000.0, 22050, 0.3, 2)
    bio = io.BytesIO()
    sf.write(bio, x, 22050, format="WAV", subtype="PCM_16")

    class FakeStdin:
        buffer = io.BytesIO(bio.getvalue())

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    with open_audio("-") as stream:
        assert stream.name == "<stdin>"
        assert stream.n_channels == 2
        y = stream.read_all()
    assert len(y) == expected_len(len(x), 22050)
    assert dominant_hz(y, TARGET_HZ) == pytest.approx(1000.0, abs=4.0)


def test_empty_stdin(monkeypatch):
    class FakeStdin:
        buffer = io.BytesIO(b"")

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    with pytest.raises(AudioError) as info:
        open_audio("-")
    assert_one_line(info.value, "empty", "<stdin>")


def test_garbage_stdin(monkeypatch):
    class FakeStdin:
        buffer = io.BytesIO(b"this is not audio at all" * 10)

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    with pytest.raises(AudioError) as info:
        load_audio("-")
    assert_one_line(info.value, "<stdin>")


def test_file_objects(tmp_path):
    path = tmp_path / "obj.flac"
    x = sine(1000.0, 48000, 0.3)
    sf.write(path, x, 48000, subtype="PCM_16")
    with open(path, "rb") as handle:
        y, _ = load_audio(handle)
    assert len(y) == expected_len(len(x), 48000)

    y2, _ = load_audio(io.BytesIO(path.read_bytes()))
    np.testing.assert_array_equal(y, y2)

    class NoSeek:
        """A pipe-like reader that cannot seek."""
        def __init__(self, data):
            self._bio = io.BytesIO(data)

        def read(self, n=-1):
            return self._bio.read(n)

        def seekable(self):
            return False

    y3, _ = load_audio(NoSeek(path.read_bytes()))
    np.testing.assert_array_equal(y, y3)

    with pytest.raises(AudioError) as info:
        open_audio(io.BytesIO(b""))
    assert_one_line(info.value, "empty")


# ----------------------------------------------------------- bad inputs ---

def test_missing_path(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError) as info:
        open_audio(path)
    assert_one_line(info.value, "no such file", str(path))
    assert isinstance(info.value, InputError)


def test_directory(tmp_path):
    with pytest.raises(AudioError) as info:
        open_audio(tmp_path)
    assert_one_line(info.value, str(tmp_path))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError) as info:
        open_audio(path)
    assert_one_line(info.value, "empty file", str(path))


def test_random_bytes(tmp_path):
    path = tmp_path / "random.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert_one_line(info.value, "cannot read audio from", str(path))


def test_text_file(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("hello\nworld\n" * 100)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert_one_line(info.value, str(path))


@pytest.mark.parametrize("cut", [4, 12, 20, 30, 43])
def test_truncated_header(tmp_path, cut):
    path = tmp_path / "head.wav"
    sf.write(path, sine(440.0, 48000, 0.1), 48000)
    path.write_bytes(path.read_bytes()[:cut])
    try:
        stream = open_audio(path)
    except AudioError as exc:
        assert_one_line(exc, str(path))
        return
    with stream:       # libsndfile accepted it: then it must be usable
        assert len(stream.read_all()) == stream.n_samples


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("WAV", "FLOAT"),
                                         ("FLAC", "PCM_16"), ("AIFF", "PCM_24")])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.97])
def test_truncated_data(tmp_path, fmt, subtype, fraction):
    path = tmp_path / f"data.{fmt.lower()}"
    sf.write(path, sine(440.0, 48000, 0.5, 2), 48000, format=fmt, subtype=subtype)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    try:
        with open_audio(path, block_seconds=0.05) as stream:
            y = np.concatenate([np.zeros(0, np.float32), *stream.blocks()])
            assert len(y) == stream.n_samples
    except AudioError as exc:
        assert_one_line(exc, str(path))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_sample(tmp_path, bad):
    path = tmp_path / "nan.wav"
    x = sine(440.0, 48000, 2.0, 2).astype(np.float32)
    x[int(1.234 * 48000), 1] = bad
    sf.write(path, x, 48000, subtype="FLOAT")
    stream = open_audio(path, block_seconds=0.25)   # the header is fine
    with stream, pytest.raises(AudioError) as info:
        for _ in stream.blocks():
            pass
    assert_one_line(info.value, "non-finite", "1.234 s", str(path))
    with pytest.raises(AudioError):
        load_audio(path)


def test_non_finite_same_rate(tmp_path):
    path = tmp_path / "nan44.wav"
    x = np.zeros(44100, dtype=np.float64)
    x[22050] = np.nan
    sf.write(path, x, 44100, subtype="DOUBLE")
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert_one_line(info.value, "0.500 s", str(path))


def test_bad_parameters(tmp_path):
    path = tmp_path / "ok.wav"
    sf.write(path, np.zeros(100), 8000)
    for kwargs in ({"target_rate_hz": 0}, {"target_rate_hz": -44100},
                   {"target_rate_hz": 44100.5}, {"block_seconds": 0},
                   {"block_seconds": float("nan")}):
        with pytest.raises(ParameterError) as info:
            open_audio(path, **kwargs)
        assert repr(next(iter(kwargs.values()))) in str(info.value)


def test_unsupported_source_type():
    with pytest.raises(AudioError):
        open_audio(12345)


def test_closed_stream(tmp_path):
    path = tmp_path / "c.wav"
    sf.write(path, np.zeros(100), 8000)
    stream = open_audio(path)
    stream.close()
    stream.close()
    with pytest.raises(AudioError):
        list(stream.blocks())


# ------------------------------------------------------------ write_wav ---

@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_write_wav_roundtrip(tmp_path, subtype):
    path = tmp_path / "out.wav"
    x = sine(1000.0, TARGET_HZ, 0.2)[:, 0].astype(np.float32)
    write_wav(path, x, TARGET_HZ, subtype=subtype)
    info = sf.info(path)
    assert info.samplerate == TARGET_HZ and info.channels == 1
    assert info.subtype == subtype and info.format == "WAV"
    y, _ = sf.read(path, dtype="float32")
    np.testing.assert_allclose(y, x, atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


def test_write_wav_stereo_int16_and_clipping(tmp_path):
    path = tmp_path / "st.wav"
    x = np.array([[0, 1000], [-32768, 32767]], dtype=np.int16)
    write_wav(path, x, 8000)
    y, rate = sf.read(path, dtype="int16")
    assert rate == 8000
    np.testing.assert_array_equal(y, x)

    write_wav(path, np.array([2.0, -2.0, 0.5]), 8000)      # overwrite, clipped
    y, _ = sf.read(path, dtype="float64")
    np.testing.assert_allclose(y, [32767 / 32768, -1.0, 0.5], atol=1e-4)


def test_write_wav_missing_folder(tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "x.wav"
    with pytest.raises(OutputError) as info:
        write_wav(path, np.zeros(10), 8000)
    assert_one_line(info.value, str(path))
    assert list(tmp_path.iterdir()) == []


def test_write_wav_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "keep.wav"
    write_wav(path, np.zeros(10), 8000)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise sf.LibsndfileError(1, "simulated\nfailure")

    monkeypatch.setattr(sf.SoundFile, "write", boom)      # the writer writes through SoundFile
    with pytest.raises(OutputError) as info:
        write_wav(path, np.ones(100) * 0.1, 8000)
    assert_one_line(info.value, str(path))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.wav"]


def test_write_wav_to_directory(tmp_path):
    with pytest.raises(OutputError):
        write_wav(tmp_path, np.zeros(10), 8000)


def test_write_wav_stdout(monkeypatch):
    class FakeStdout:
        buffer = io.BytesIO()

    fake = FakeStdout()
    monkeypatch.setattr(sys, "stdout", fake)
    write_wav("-", np.zeros(50), 8000)
    data = fake.buffer.getvalue()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    y, rate = sf.read(io.BytesIO(data))
    assert rate == 8000 and len(y) == 50


def test_write_wav_bad_arguments(tmp_path):
    path = tmp_path / "bad.wav"
    with pytest.raises(ParameterError):
        write_wav(path, np.zeros((2, 2, 2)), 8000)
    with pytest.raises(ParameterError):
        write_wav(path, np.zeros(10), 0)
    with pytest.raises(ParameterError):
        write_wav(path, np.zeros(10), 8000, subtype="VORBIS")
    assert not path.exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs POSIX permissions and a non-root user")
def test_unreadable_file(tmp_path):
    path = tmp_path / "locked.wav"
    sf.write(path, np.zeros(100), 8000)
    path.chmod(0)
    try:
        with pytest.raises(AudioError) as info:
            open_audio(path)
        assert_one_line(info.value, str(path))
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize("up, down", [(147, 160), (160, 147), (3675, 4143), (2, 1), (1, 3),
                                      (441, 80), (7, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_own_resampler_equals_scipy_to_rounding(up, down, dtype):
    from wav2vgm.resample import lowpass_filter, resample_poly as own
    from scipy.signal import firwin
    rng = np.random.default_rng(up * 1000 + down)
    for shape in ((5003,), (1,), (40, 3)):
        x = rng.standard_normal(shape).astype(dtype)
        a, b = resample_poly(x, up, down, axis=0), own(x, up, down, axis=0)
        assert a.shape == b.shape and a.dtype == b.dtype
        assert np.abs(a - b).max() <= (2e-6 if dtype == np.float32 else 1e-12)
    g = np.gcd(up, down)
    m = max(up, down) // g
    assert np.abs(lowpass_filter(up, down) - firwin(20 * m + 1, 1 / m, window=("kaiser", 5.0))).max() < 1e-15


def test_own_periodic_hann_is_scipys_bit_for_bit():
    from scipy.signal import get_window
    from wav2vgm.spectrum import hann_periodic
    for n in (1, 2, 3, 512, 1323, 2048, 2049):
        assert np.array_equal(hann_periodic(n), get_window("hann", n, fftbins=True))


@pytest.mark.parametrize("rate_hz", [44100, 48000, 22050])
def test_window_reads_part_of_the_stream_directly(tmp_path, rate_hz):
    rng = np.random.default_rng(4)
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * rate_hz) / rate_hz)
         + 0.01 * rng.standard_normal(3 * rate_hz)).astype(np.float32)
    path = tmp_path / "w.wav"
    sf.write(str(path), x, rate_hz, subtype="FLOAT")
    with open_audio(str(path), target_rate_hz=44100) as s:
        whole = np.concatenate(list(s.blocks()))
        part = s.window(50_000, 30_000)
        assert part.dtype == np.float32 and part.shape == (30_000,)
        assert np.array_equal(part, whole[50_000:80_000])        # resampled in phase
        assert np.array_equal(s.window(37, 500), whole[37:537])
        # clipped to the input; blocks() still starts from the beginning afterwards
        assert s.window(whole.size - 100, 1000).shape == (100,)
        assert s.window(whole.size + 5, 10).shape == (0,)
        assert np.array_equal(np.concatenate(list(s.blocks())), whole)


def test_write_wav_blocks_writes_what_write_wav_writes(tmp_path):
    x = (np.random.default_rng(0).standard_normal((5000, 2)) * 0.3).astype(np.float32)
    write_wav(tmp_path / "whole.wav", x, 44100)
    write_wav_blocks(tmp_path / "parts.wav", (x[a:a + 1234] for a in range(0, 5000, 1234)),
                     44100, channels=2)
    assert (tmp_path / "parts.wav").read_bytes() == (tmp_path / "whole.wav").read_bytes()


def test_write_wav_blocks_a_failing_source_leaves_nothing(tmp_path):
    path = tmp_path / "keep.wav"
    write_wav(path, np.zeros(10), 8000)
    before = path.read_bytes()

    def blocks():
        yield np.zeros((100, 2), np.float32)
        raise OutputError("the source failed half-way")

    with pytest.raises(OutputError, match="half-way"):
        write_wav_blocks(path, blocks(), 8000, channels=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.wav"]
