"""The ``wav2vgm`` command line end to end: outputs, batches, exit codes and messages.

Every conversion uses ``--method sines`` (the model method depends on the
ONNX model file) and short generated audio, so the whole file runs quickly.
Most tests run in process through :class:`click.testing.CliRunner`; a few run
``python -m wav2vgm.cli`` in a subprocess to see the real stderr and to use
worker processes.
"""

from __future__ import annotations

import errno
import gzip
import io
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from wav2vgm.cli import main
from wav2vgm.vgm import check_strict, read_vgm

SINES = ["--method", "sines"]
RATE = 44100


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _runner() -> CliRunner:
    # click >= 8.2 keeps stdout and stderr apart by default (mix_stderr is gone)
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


def cli(*args, input=None):
    """Run the CLI in process; returns click's Result (exit_code, stdout(_bytes), stderr)."""
    result = _runner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=True)
    # an exception that escaped the CLI (not SystemExit) is a bug in the error handling
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback
        tb = "".join(traceback.format_exception(*result.exc_info))
        raise AssertionError(f"exception escaped the CLI:\n{tb}")
    return result


def cli_subprocess(*args, input=None, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "wav2vgm.cli", *[str(a) for a in args]],
                          input=input, capture_output=True, cwd=cwd, timeout=timeout)


def assert_ok(result):
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr


def assert_error(result, code, *fragments):
    """Exit ``code`` with exactly one line on stderr, no traceback, nothing on stdout."""
    assert result.exit_code == code, (result.exit_code, result.stderr)
    err = result.stderr
    assert "Traceback" not in err and "Traceback" not in result.stdout
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("wav2vgm: error: "), err
    assert result.stdout_bytes == b""
    for frag in fragments:
        assert frag.lower() in lines[0].lower(), (frag, lines[0])
    return lines[0]


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_no_temp_files(folder: Path):
    leftovers = [p for p in folder.rglob("*")
                 if p.name.startswith(".") or p.name.endswith(".part") or p.name.endswith(".tmp")]
    assert not leftovers, leftovers


def tone(seconds=1.0, rate=RATE, f_hz=440.0, amp=0.5, channels=1):
    t = np.arange(int(round(seconds * rate))) / rate
    x = amp * np.sin(2 * np.pi * f_hz * t)
    if channels > 1:
        x = np.stack([x * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)
    return x


def write_audio(path: Path, data, rate=RATE, subtype=None, fmt=None) -> Path:
    sf.write(str(path), data, rate, subtype=subtype, format=fmt)
    return path


def wav_bytes(data, rate=RATE, subtype="PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, rate, subtype=subtype, format="WAV")
    return buf.getvalue()


@pytest.fixture
def song(tmp_path) -> Path:
    """One second of A4 at 44.1 kHz, 16-bit mono."""
    return write_audio(tmp_path / "song.wav", tone(1.0))


# ---------------------------------------------------------------------------------------------
# 1. a WAV -> a VGM next to it
# ---------------------------------------------------------------------------------------------

def test_convert_default_output_next_to_input(tmp_path):
    n = 55125                                   # 1.25 s, not a multiple of the frame hop
    src = write_audio(tmp_path / "My Song.wav", tone(n / RATE))
    result = cli("convert", src, *SINES)
    assert_ok(result)
    out = tmp_path / "My Song.vgm"
    assert out.is_file()
    assert result.stdout_bytes == b""
    data = out.read_bytes()
    assert check_strict(data) == []
    vgm = read_vgm(str(out))
    assert abs(vgm.end_time - n) <= 1, vgm.end_time
    assert vgm.gd3 is not None and vgm.gd3.title == "My Song"
    assert vgm.n_writes > 0
    assert_no_temp_files(tmp_path)
    # stderr names what was written, with the frame rate the conversion ran at
    assert f"wrote {out}" in result.stderr and "60 frames/s" in result.stderr
    assert f"{vgm.n_writes} writes" in result.stderr


# ---------------------------------------------------------------------------------------------
# 2. .vgz and stdout
# ---------------------------------------------------------------------------------------------

def test_convert_vgz_is_gzip_and_reads_back(tmp_path, song):
    out = tmp_path / "out.vgz"
    assert_ok(cli("convert", song, "-o", out, *SINES))
    raw = out.read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    plain = gzip.decompress(raw)
    assert plain[:4] == b"Vgm "
    assert check_strict(raw) == [] and check_strict(plain) == []
    vgm = read_vgm(str(out))
    assert abs(vgm.end_time - RATE) <= 1
    # same content as the plain .vgm
    assert_ok(cli("convert", song, "-o", tmp_path / "out.vgm", *SINES))
    assert (tmp_path / "out.vgm").read_bytes() == plain


def test_convert_loop_to_file_vgz_and_stdout(tmp_path, song):
    assert_ok(cli("convert", song, "-o", tmp_path / "l.vgm", "--loop", *SINES))
    assert_ok(cli("convert", song, "-o", tmp_path / "l.vgz", "--loop", *SINES))
    piped = cli("convert", song, "-o", "-", "--loop", *SINES)
    assert_ok(piped)
    data = (tmp_path / "l.vgm").read_bytes()
    assert piped.stdout_bytes == data == gzip.decompress((tmp_path / "l.vgz").read_bytes())
    assert check_strict(data) == []
    vgm = read_vgm(str(tmp_path / "l.vgm"))
    assert vgm.loop_offset == 0x100 and vgm.loop_samples == vgm.total_samples
    info = cli("info", tmp_path / "l.vgm")
    assert_ok(info)
    assert "loop:" in info.stdout and "from byte 0x100 to the end" in info.stdout


def test_convert_loop_start_and_its_errors(tmp_path, song):
    assert_ok(cli("convert", song, "-o", tmp_path / "l.vgm", "--loop-start", "0.5", *SINES))
    vgm = read_vgm(str(tmp_path / "l.vgm"))
    assert vgm.loop_offset > 0x100
    assert abs((vgm.total_samples - vgm.loop_samples) - 0.5 * RATE) <= 150
    one = tmp_path / "one.wav"
    three = tmp_path / "three.wav"
    assert_ok(cli("render", tmp_path / "l.vgm", "-o", one, "-q"))
    assert_ok(cli("render", tmp_path / "l.vgm", "-o", three, "--loops", "3", "-q"))
    n1, n3 = sf.info(str(one)).frames, sf.info(str(three)).frames
    assert abs(n3 - n1 - 2 * vgm.loop_samples) < 600       # two more passes of the loop
    for bad in ("5", "-1", "nan"):
        result = cli("convert", song, "-o", tmp_path / "bad.vgm", "--loop-start", bad, *SINES)
        assert result.exit_code == 2, (bad, result.stderr)
        assert "loop start" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "bad.vgm").exists()


def test_convert_to_stdout_matches_file_output(tmp_path, song):
    opts = [*SINES, "--frame-rate", "50", "--voices", "6", "--author", "Me"]
    assert_ok(cli("convert", song, "-o", tmp_path / "file.vgm", *opts))
    result = cli("convert", song, "-o", "-", *opts)
    assert_ok(result)
    assert result.stdout_bytes == (tmp_path / "file.vgm").read_bytes()
    assert check_strict(result.stdout_bytes) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.vgm", "song.wav"]


# ---------------------------------------------------------------------------------------------
# 3. stdin
# ---------------------------------------------------------------------------------------------

def test_convert_from_stdin(tmp_path):
    data = wav_bytes(tone(0.75))
    result = cli("convert", "-", "-o", tmp_path / "in.vgm", *SINES, input=data)
    assert_ok(result)
    vgm_data = (tmp_path / "in.vgm").read_bytes()
    assert check_strict(vgm_data) == []
    assert abs(read_vgm(vgm_data).end_time - int(0.75 * RATE)) <= 1
    # '-' without -o: stdin to stdout
    result = cli("convert", "-", *SINES, input=data)
    assert_ok(result)
    assert result.stdout_bytes[:4] == b"Vgm "
    assert check_strict(result.stdout_bytes) == []


def test_stdin_to_stdout_in_a_real_pipe(tmp_path):
    data = wav_bytes(tone(0.5))
    proc = cli_subprocess("convert", "-", "-o", "-", *SINES, input=data)
    assert proc.returncode == 0, proc.stderr
    assert check_strict(proc.stdout) == []
    assert b"Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# 4. folder batches
# ---------------------------------------------------------------------------------------------

def _songs(tmp_path) -> Path:
    songs = tmp_path / "SONGS"
    (songs / "sub" / "deeper").mkdir(parents=True)
    write_audio(songs / "one.wav", tone(0.5, f_hz=330))
    write_audio(songs / "sub" / "two.flac", tone(0.5, rate=48000, f_hz=550), rate=48000)
    write_audio(songs / "sub" / "deeper" / "three.wav", tone(0.6, rate=22050, f_hz=220), rate=22050)
    return songs


EXPECTED = {"one.vgm", "sub", "sub/two.vgm", "sub/deeper", "sub/deeper/three.vgm"}


def test_folder_batch_mirrors_tree_skips_and_overwrites(tmp_path):
    songs = _songs(tmp_path)
    out = tmp_path / "OUT"
    result = cli("convert", songs, "-o", out, *SINES, "--jobs", "1")
    assert_ok(result)
    assert tree(out) == EXPECTED
    for rel in ("one.vgm", "sub/two.vgm", "sub/deeper/three.vgm"):
        data = (out / rel).read_bytes()
        assert check_strict(data) == [], rel
        assert read_vgm(data).gd3.title == Path(rel).stem
    assert "converted 3 of 3" in result.stderr

    # a second run skips what exists and leaves it alone
    for p in out.rglob("*.vgm"):
        os.utime(p, (1_000_000, 1_000_000))
    result = cli("convert", songs, "-o", out, *SINES, "--jobs", "1")
    assert_ok(result)
    assert "3 skipped" in result.stderr
    assert all(p.stat().st_mtime == 1_000_000 for p in out.rglob("*.vgm"))

    # --overwrite converts them again
    result = cli("convert", songs, "-o", out, *SINES, "--jobs", "1", "--overwrite")
    assert_ok(result)
    assert "converted 3 of 3" in result.stderr and "0 skipped" in result.stderr
    assert all(p.stat().st_mtime > 1_000_000 for p in out.rglob("*.vgm"))
    assert tree(out) == EXPECTED
    assert_no_temp_files(out)


def test_folder_batch_with_a_corrupt_file_exits_5(tmp_path):
    songs = _songs(tmp_path)
    (songs / "sub" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    out = tmp_path / "OUT"
    result = cli("convert", songs, "-o", out, *SINES, "--jobs", "1")
    assert result.exit_code == 5, result.stderr
    assert "Traceback" not in result.stderr
    assert "broken.wav" in result.stderr
    assert "converted 3 of 4" in result.stderr and "1 failed" in result.stderr
    assert tree(out) == EXPECTED                 # the good ones, and nothing for broken.wav
    assert_no_temp_files(out)


def test_folder_batch_with_two_worker_processes(tmp_path):
    songs = _songs(tmp_path)
    (songs / "bad.wav").write_bytes(b"this is not audio at all")
    out = tmp_path / "OUT"
    proc = cli_subprocess("convert", songs, "-o", out, *SINES, "--jobs", "2")
    assert proc.returncode == 5, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert tree(out) == EXPECTED
    assert_no_temp_files(out)
    (songs / "bad.wav").unlink()
    proc = cli_subprocess("convert", songs, "-o", out, *SINES, "--jobs", "2", "--overwrite",
                          "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b"" and proc.stdout == b""
    for p in out.rglob("*.vgm"):
        assert check_strict(p.read_bytes()) == [], p


def test_folder_batch_results_equal_single_file_results(tmp_path):
    songs = _songs(tmp_path)
    out = tmp_path / "OUT"
    assert_ok(cli("convert", songs, "-o", out, *SINES, "--jobs", "1", "--quiet"))
    assert_ok(cli("convert", songs / "sub" / "two.flac", "-o", tmp_path / "two.vgm", *SINES))
    assert (out / "sub" / "two.vgm").read_bytes() == (tmp_path / "two.vgm").read_bytes()


# ---------------------------------------------------------------------------------------------
# 5. odd but valid inputs
# ---------------------------------------------------------------------------------------------

def _odd_inputs():
    n = 0.5
    cases = {
        "rate_8k": (tone(n, rate=8000), 8000, "PCM_16"),
        "rate_192k": (tone(n, rate=192000, f_hz=1000), 192000, "PCM_16"),
        "pcm_u8": (tone(n), RATE, "PCM_U8"),
        "pcm_16": (tone(n), RATE, "PCM_16"),
        "pcm_24": (tone(n), RATE, "PCM_24"),
        "pcm_32": (tone(n), RATE, "PCM_32"),
        "float": (tone(n), RATE, "FLOAT"),
        "double": (tone(n), RATE, "DOUBLE"),
        "mono": (tone(n, channels=1), RATE, "PCM_16"),
        "stereo": (tone(n, channels=2), RATE, "PCM_16"),
        "six_channels": (tone(n, channels=6), RATE, "PCM_16"),
        "silence": (np.zeros(int(n * RATE)), RATE, "PCM_16"),
        "dc_offset": (np.full(int(n * RATE), 0.4), RATE, "PCM_16"),
        "dc_plus_tone": (0.3 + 0.3 * tone(n), RATE, "FLOAT"),
        "clipped_square": (np.sign(np.sin(2 * np.pi * 110 * np.arange(int(n * RATE)) / RATE)) * 1.0,
                           RATE, "PCM_16"),
        "float_over_full_scale": (4.0 * tone(n), RATE, "FLOAT"),
        "shorter_than_a_frame": (tone(100 / RATE), RATE, "PCM_16"),
        "one_sample": (np.array([0.5]), RATE, "PCM_16"),
    }
    return cases


ODD = _odd_inputs()


@pytest.mark.parametrize("name", list(ODD))
def test_odd_but_valid_inputs_convert(tmp_path, name):
    data, rate, subtype = ODD[name]
    src = write_audio(tmp_path / f"{name}.wav", data, rate=rate, subtype=subtype)
    result = cli("convert", src, *SINES)
    assert_ok(result)
    out = tmp_path / f"{name}.vgm"
    vgm_data = out.read_bytes()
    assert check_strict(vgm_data) == [], check_strict(vgm_data)
    n_frames = np.asarray(data).shape[0]
    expected = math.ceil(n_frames * RATE / rate)
    assert abs(read_vgm(vgm_data).end_time - expected) <= 1


def test_other_formats_convert(tmp_path):
    x = tone(0.5, channels=2)
    for name, fmt in (("a.flac", "FLAC"), ("a.ogg", "OGG"), ("a.aiff", "AIFF")):
        src = write_audio(tmp_path / name, x, fmt=fmt)
        out = tmp_path / (name + ".vgm")
        assert_ok(cli("convert", src, "-o", out, *SINES))
        assert check_strict(out.read_bytes()) == [], name


def test_tag_options_reach_the_gd3(tmp_path, song):
    out = tmp_path / "tagged.vgm"
    assert_ok(cli("convert", song, "-o", out, *SINES, "--title", "Hello", "--author", "Me",
                  "--game", "Demo", "--notes", "take 2"))
    gd3 = read_vgm(str(out)).gd3
    assert (gd3.title, gd3.author, gd3.game, gd3.notes) == ("Hello", "Me", "Demo", "take 2")


# ---------------------------------------------------------------------------------------------
# 6. bad inputs and options
# ---------------------------------------------------------------------------------------------

def _nonfinite(value):
    x = tone(0.5).astype(np.float32)
    x[5000] = value
    return x


def _bad_audio(tmp_path, name) -> list[str]:
    """Create the bad input ``name`` in tmp_path; return the CLI arguments."""
    if name == "text_file":
        p = tmp_path / "notes.wav"
        p.write_text("this is a text file, not audio\n" * 20)
        return ["convert", str(p)]
    if name == "text_file_txt":
        p = tmp_path / "notes.txt"
        p.write_text("hello\n")
        return ["convert", str(p)]
    if name == "empty_file":
        p = tmp_path / "empty.wav"
        p.write_bytes(b"")
        return ["convert", str(p)]
    if name == "wav_header_only":
        p = tmp_path / "header.wav"
        p.write_bytes(wav_bytes(tone(1.0))[:44])
        return ["convert", str(p)]
    if name == "riff_garbage":
        p = tmp_path / "garbage.wav"
        p.write_bytes(b"RIFF\xff\xff\xff\xffWAVEfmt " + bytes(range(256)) * 4)
        return ["convert", str(p)]
    if name == "missing_path":
        return ["convert", str(tmp_path / "nope.wav")]
    if name == "missing_folder_input":
        return ["convert", str(tmp_path / "NOPE"), "-o", str(tmp_path / "OUT")]
    if name == "folder_without_audio":
        d = tmp_path / "DOCS"
        d.mkdir()
        (d / "readme.txt").write_text("nothing to hear")
        return ["convert", str(d), "-o", str(tmp_path / "OUT")]
    if name == "nan_samples":
        p = write_audio(tmp_path / "nan.wav", _nonfinite(np.nan), subtype="FLOAT")
        return ["convert", str(p)]
    if name == "inf_samples":
        p = write_audio(tmp_path / "inf.wav", _nonfinite(np.inf), subtype="FLOAT")
        return ["convert", str(p)]
    if name == "minus_inf_samples_double":
        p = write_audio(tmp_path / "minf.wav", _nonfinite(-np.inf).astype(np.float64),
                        subtype="DOUBLE")
        return ["convert", str(p)]
    if name == "stdin_empty":
        return ["convert", "-", "-o", str(tmp_path / "x.vgm")]
    raise KeyError(name)


BAD_AUDIO = ["text_file", "text_file_txt", "empty_file", "wav_header_only", "riff_garbage",
             "missing_path", "missing_folder_input", "folder_without_audio", "nan_samples",
             "inf_samples", "minus_inf_samples_double", "stdin_empty"]


@pytest.mark.parametrize("name", BAD_AUDIO)
def test_bad_audio_input_exits_3(tmp_path, name):
    args = _bad_audio(tmp_path, name)
    before = tree(tmp_path)
    result = cli(*args, *SINES, input=b"" if "-" in args else None)
    assert_error(result, 3)
    assert tree(tmp_path) == before            # no output, no temp file, no OUT folder


def _good_vgm(tmp_path) -> bytes:
    src = write_audio(tmp_path / "src.wav", tone(0.5))
    out = tmp_path / "good.vgm"
    assert_ok(cli("convert", src, "-o", out, *SINES))
    return out.read_bytes()


def _bad_vgm(name: str, good: bytes) -> bytes:
    if name == "not_vgm":
        return b"hello, world\n" * 10
    if name == "empty":
        return b""
    if name == "header_cut":
        return good[:0x30]
    if name == "data_cut":
        return good[:0x103]
    if name == "no_gd3_room":
        return good[:len(good) - 20]
    if name == "bad_data_offset":
        return good[:0x34] + b"\xff\xff\xff\x7f" + good[0x38:]
    if name == "unknown_command":
        return good[:0x100] + b"\xee" + good[0x101:]
    if name == "corrupt_vgz":
        return gzip.compress(good)[:40]
    if name == "vgz_of_garbage":
        return gzip.compress(b"garbage" * 20)
    raise KeyError(name)


BAD_VGM = ["not_vgm", "empty", "header_cut", "data_cut", "no_gd3_room", "bad_data_offset",
           "unknown_command", "corrupt_vgz", "vgz_of_garbage"]


@pytest.mark.parametrize("command", ["render", "info"])
def test_malformed_vgm_exits_3(tmp_path, command):
    good = _good_vgm(tmp_path)
    for name in BAD_VGM:
        bad = tmp_path / f"{name}.vgm"
        bad.write_bytes(_bad_vgm(name, good))
        before = tree(tmp_path)
        if command == "render":
            result = cli("render", bad, "-o", tmp_path / f"{name}.out.wav")
        else:
            result = cli("info", bad)
        assert_error(result, 3)
        assert tree(tmp_path) == before, name


def test_render_and_info_of_a_missing_file_exit_3(tmp_path):
    assert_error(cli("info", tmp_path / "nope.vgm"), 3, "nope.vgm")
    assert_error(cli("render", tmp_path / "nope.vgm", "-o", tmp_path / "x.wav"), 3)
    assert_error(cli("score", tmp_path / "nope.wav", tmp_path / "nope.vgm"), 3)
    assert list(tmp_path.iterdir()) == []


def test_output_path_equal_to_input_exits_2(tmp_path):
    # an audio file named .vgm: its default output is itself
    src = write_audio(tmp_path / "same.vgm", tone(0.5), fmt="WAV")
    original = src.read_bytes()
    assert_error(cli("convert", src, *SINES), 2, "input")
    assert_error(cli("convert", src, "-o", src, *SINES), 2, "input")
    assert_error(cli("convert", src, "-o", tmp_path / "." / "same.vgm", *SINES), 2, "input")
    assert src.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.vgm"]


def test_output_with_a_wrong_suffix_exits_2(tmp_path, song):
    assert_error(cli("convert", song, "-o", song, *SINES), 2)
    assert_error(cli("convert", song, "-o", tmp_path / "out.mp3", *SINES), 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]


@pytest.mark.parametrize("opts", [
    ["--frame-rate", "0"],
    ["--frame-rate", "-5"],
    ["--frame-rate", "nan"],
    ["--frame-rate", "5000"],
    ["--substeps", "0"],
    ["--substeps", "17"],
    ["--substeps", "1.5"],
    ["--voices", "40"],
    ["--voices", "0"],
    ["--voices", "x"],
    ["--split-sides", "--voices", "1"],
    ["--split-sides", "--mono"],
    ["--gain", "abc"],
    ["--gain", "inf"],
    ["--gain", "1000"],
    ["--method", "magic"],
    ["--quality", "ultra"],
    ["--jobs", "two"],
    ["--no-such-option"],
])
def test_nonsense_options_exit_2(tmp_path, song, opts):
    args = ["convert", song, *opts] if opts[:1] == ["--method"] else ["convert", song, *SINES, *opts]
    assert_error(cli(*args), 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]


def test_usage_errors_of_other_commands_exit_2(tmp_path, song):
    assert_error(cli("render", song), 2)                    # no -o
    assert_error(cli("render", song, "-o", "x.wav", "--rate", "10"), 2)
    assert_error(cli("convert"), 2)                          # no input
    assert_error(cli("frobnicate"), 2)


def test_several_inputs_need_an_output_folder(tmp_path, song):
    other = write_audio(tmp_path / "other.wav", tone(0.5))
    assert_error(cli("convert", song, other, "-o", tmp_path / "x.vgm", *SINES), 2)
    assert_error(cli("convert", tmp_path, "-o", "-", *SINES), 2)


def test_errors_are_one_line_on_the_real_stderr(tmp_path):
    (tmp_path / "t.wav").write_text("not audio")
    for args, code in ((["convert", tmp_path / "t.wav", *SINES], 3),
                       (["convert", tmp_path / "t.wav", "--gain", "abc"], 2),
                       (["info", tmp_path / "t.wav"], 3)):
        proc = cli_subprocess(*args)
        assert proc.returncode == code, proc.stderr
        err = proc.stderr.decode()
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
        assert proc.stdout == b""


# ---------------------------------------------------------------------------------------------
# 7. outputs that cannot be written
# ---------------------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores file permissions")
def test_unwritable_output_folder_exits_4(tmp_path, song):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert_error(cli("convert", song, "-o", locked / "x.vgm", *SINES), 4, "locked")
        songs = _songs(tmp_path)
        assert_error(cli("convert", songs, "-o", locked / "OUT", *SINES, "--jobs", "1"), 4)
        assert_error(cli("render", _write_vgm(tmp_path), "-o", locked / "x.wav"), 4)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_permission_denied_exits_4_even_as_root(tmp_path, song, monkeypatch):
    # what a read-only folder does to a normal user, simulated so that it also runs as root
    import wav2vgm.batch

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(wav2vgm.batch.tempfile, "mkstemp", denied)
    (tmp_path / "ro").mkdir()
    line = assert_error(cli("convert", song, "-o", tmp_path / "ro" / "x.vgm", *SINES), 4, "ro")
    assert "permission denied" in line.lower()
    assert list((tmp_path / "ro").iterdir()) == []


def _write_vgm(tmp_path) -> Path:
    p = tmp_path / "r.vgm"
    p.write_bytes(_good_vgm(tmp_path))
    return p


def test_output_into_a_missing_folder_exits_4(tmp_path, song):
    assert_error(cli("convert", song, "-o", tmp_path / "nope" / "x.vgm", *SINES), 4, "nope")
    assert_error(cli("convert", song, "-o", tmp_path / "nope" / "x.vgz", *SINES), 4, "nope")
    vgm = _write_vgm(tmp_path)
    assert_error(cli("render", vgm, "-o", tmp_path / "nope" / "x.wav"), 4, "nope")
    assert not (tmp_path / "nope").exists()


def test_output_into_an_existing_folder_named_like_a_file(tmp_path, song):
    (tmp_path / "dir.vgm").mkdir()
    result = cli("convert", song, "-o", tmp_path / "dir.vgm", *SINES)
    # an existing folder as -o means "put it in there"
    assert_ok(result)
    assert check_strict((tmp_path / "dir.vgm" / "song.vgm").read_bytes()) == []


# ---------------------------------------------------------------------------------------------
# 8. a full disk
# ---------------------------------------------------------------------------------------------

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("suffix", [".vgm", ".vgz"])
def test_full_disk_on_fsync_exits_4(tmp_path, song, monkeypatch, suffix):
    import wav2vgm.batch
    monkeypatch.setattr(wav2vgm.batch.os, "fsync", _enospc)
    out = tmp_path / f"out{suffix}"
    line = assert_error(cli("convert", song, "-o", out, *SINES), 4, str(out))
    assert "no space" in line.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]


class _FullDiskFile:
    """A file object whose writes fail with ENOSPC once ``budget`` bytes are written."""

    def __init__(self, f, budget):
        self._f = f
        self._budget = budget

    def write(self, data):
        if len(data) > self._budget:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._budget -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


@pytest.mark.parametrize("budget", [0, 300])
def test_full_disk_while_writing_exits_4(tmp_path, song, monkeypatch, budget):
    import wav2vgm.batch
    real_fdopen = os.fdopen
    monkeypatch.setattr(wav2vgm.batch.os, "fdopen",
                        lambda fd, *a, **k: _FullDiskFile(real_fdopen(fd, *a, **k), budget))
    out = tmp_path / "out.vgm"
    line = assert_error(cli("convert", song, "-o", out, *SINES), 4, str(out))
    assert "no space" in line.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]


def test_full_disk_in_a_folder_batch_exits_5_without_temp_files(tmp_path, monkeypatch):
    import wav2vgm.batch
    monkeypatch.setattr(wav2vgm.batch.os, "fsync", _enospc)
    songs = _songs(tmp_path)
    out = tmp_path / "OUT"
    result = cli("convert", songs, "-o", out, *SINES, "--jobs", "1")
    assert result.exit_code == 5, result.stderr
    assert "Traceback" not in result.stderr
    assert "no space" in result.stderr.lower()
    assert not list(out.rglob("*.vgm"))
    assert_no_temp_files(out)


def test_full_disk_on_stdout_exits_4(tmp_path, song, monkeypatch):
    # stdout that refuses writes
    import wav2vgm.batch

    class _Stdout:
        class buffer:  # noqa: N801
            @staticmethod
            def write(data):
                _enospc()

            @staticmethod
            def flush():
                pass

    def run():
        monkeypatch.setattr(wav2vgm.batch.sys, "stdout", _Stdout())
        from wav2vgm.batch import convert_file
        from wav2vgm.convert import ConvertOptions
        convert_file(str(song), "-", ConvertOptions(method="sines"))

    from wav2vgm.errors import OutputError
    with pytest.raises(OutputError) as info:
        run()
    assert "stdout" in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# 9. determinism
# ---------------------------------------------------------------------------------------------

def test_conversion_is_deterministic(tmp_path):
    rng = np.random.default_rng(1)
    x = 0.3 * tone(1.0, f_hz=261.6) + 0.2 * tone(1.0, f_hz=392.0) + 0.01 * rng.standard_normal(RATE)
    src = write_audio(tmp_path / "chord.wav", x)
    assert_ok(cli("convert", src, "-o", tmp_path / "a.vgm", *SINES))
    assert_ok(cli("convert", src, "-o", tmp_path / "b.vgm", *SINES))
    assert_ok(cli("convert", src, "-o", tmp_path / "a.vgz", *SINES))
    assert_ok(cli("convert", src, "-o", tmp_path / "b.vgz", *SINES))
    assert (tmp_path / "a.vgm").read_bytes() == (tmp_path / "b.vgm").read_bytes()
    assert (tmp_path / "a.vgz").read_bytes() == (tmp_path / "b.vgz").read_bytes()
    # and in a fresh interpreter
    proc = cli_subprocess("convert", src, "-o", tmp_path / "c.vgm", *SINES)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "c.vgm").read_bytes() == (tmp_path / "a.vgm").read_bytes()


# ---------------------------------------------------------------------------------------------
# 10. render, info, score
# ---------------------------------------------------------------------------------------------

def test_render_writes_a_wav_of_the_right_duration(tmp_path):
    src = write_audio(tmp_path / "s.wav", tone(1.5))
    vgm = tmp_path / "s.vgm"
    assert_ok(cli("convert", src, "-o", vgm, *SINES))
    for rate, timing in ((44100, "adplay"), (22050, "adplay"), (48000, "exact")):
        out = tmp_path / f"r{rate}.wav"
        result = cli("render", vgm, "-o", out, "--rate", rate, "--timing", timing)
        assert_ok(result)
        info = sf.info(str(out))
        assert info.samplerate == rate and info.channels == 2
        assert abs(info.duration - 1.5) <= 0.03 * 1.5, info.duration
        y, _ = sf.read(str(out))
        assert np.isfinite(y).all() and np.abs(y).max() > 0.01
    assert_no_temp_files(tmp_path)


def test_render_to_stdout_and_from_vgz(tmp_path):
    src = write_audio(tmp_path / "s.wav", tone(0.5))
    assert_ok(cli("convert", src, "-o", tmp_path / "s.vgz", *SINES))
    result = cli("render", tmp_path / "s.vgz", "-o", "-")
    assert_ok(result)
    y, rate = sf.read(io.BytesIO(result.stdout_bytes))
    assert rate == 44100 and abs(y.shape[0] / rate - 0.5) <= 0.03 * 0.5


def test_info_prints_the_statistics(tmp_path):
    src = write_audio(tmp_path / "s.wav", tone(1.0))
    vgm = tmp_path / "s.vgm"
    assert_ok(cli("convert", src, "-o", vgm, *SINES, "--title", "Info test"))
    result = cli("info", vgm)
    assert_ok(result)
    lines = result.stdout.splitlines()
    fields = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in lines}
    for key in ("version", "duration_s", "writes", "largest_burst"):
        assert key in fields, result.stdout
    assert fields["version"] == "1.71"
    assert abs(float(fields["duration_s"]) - 1.0) < 0.001
    assert int(fields["writes"]) == read_vgm(str(vgm)).n_writes
    assert int(fields["largest_burst"]) >= 1
    assert fields.get("gd3_title") == "Info test"
    assert result.stderr == ""


def test_digital_silence_converts_without_warnings(tmp_path):
    # a block of frames that is all digital silence (here the whole input) must not
    # produce log(0) warnings on stderr, nor fail when warnings are errors
    src = write_audio(tmp_path / "silence.wav", np.zeros(44100 * 10, np.float32))
    out = tmp_path / "silence.vgm"
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "wav2vgm.cli",
                           "convert", str(src), "-o", str(out), "--quiet"],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    assert read_vgm(str(out)).total_samples == 44100 * 10


def test_info_and_render_read_a_vgm_piped_from_convert(tmp_path):
    src = write_audio(tmp_path / "s.wav", tone(0.5))
    vgm = cli_subprocess("convert", src, "-o", "-", *SINES)
    assert vgm.returncode == 0 and vgm.stdout[:4] == b"Vgm "
    proc = cli_subprocess("info", "-", input=vgm.stdout)
    assert proc.returncode == 0, proc.stderr
    assert b"duration_s:" in proc.stdout and proc.stderr == b""
    proc = cli_subprocess("render", "-", "-o", "-", input=vgm.stdout)
    assert proc.returncode == 0, proc.stderr
    y, rate = sf.read(io.BytesIO(proc.stdout))
    assert rate == 44100 and abs(y.shape[0] / rate - 0.5) <= 0.03 * 0.5
    empty = cli_subprocess("info", "-", input=b"")
    assert empty.returncode == 3 and empty.stderr.count(b"\n") == 1, empty.stderr


def test_score_prints_a_finite_distance(tmp_path):
    src = write_audio(tmp_path / "s.wav", tone(1.0))
    vgm = tmp_path / "s.vgm"
    assert_ok(cli("convert", src, "-o", vgm, *SINES))
    result = cli("score", src, vgm)
    assert_ok(result)
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("distance_db:")]
    assert len(line) == 1, result.stdout
    d = float(line[0].split(":", 1)[1])
    assert math.isfinite(d) and 0 <= d < 20, d


def _side_scores(result) -> dict:
    assert_ok(result)
    out = dict(ln.split(": ", 1) for ln in result.stdout.splitlines())
    assert set(out) == {"distance_db", "left_db", "right_db"}, result.stdout
    return out


def test_score_sides_hears_a_note_on_the_wrong_side(tmp_path):
    """--sides scores each output against its side of the reference: a note on both outputs
    that the reference has on one side only costs there, which the mean of the outputs
    (the default score) cannot hear."""
    left, right = tone(1.0, f_hz=440.0)[:, None], tone(1.0, f_hz=1320.0, amp=0.3)[:, None]
    src = write_audio(tmp_path / "lr.wav", np.hstack([left, right]))
    scores = {}
    for option in ("--stereo", "--mono"):
        vgm = tmp_path / f"{option[2:]}.vgm"
        assert_ok(cli("convert", src, "-o", vgm, *SINES, option))
        scores[option] = {k: float(v) for k, v in _side_scores(cli("score", src, vgm, "--sides")).items()}
        s = scores[option]
        assert s["distance_db"] == pytest.approx((s["left_db"] + s["right_db"]) / 2, abs=2e-3)
    assert scores["--stereo"]["left_db"] < 3 and scores["--stereo"]["right_db"] < 3, scores
    assert scores["--mono"]["left_db"] > scores["--stereo"]["left_db"] + 3, scores
    assert scores["--mono"]["right_db"] > scores["--stereo"]["right_db"] + 3, scores
    # a mono reference is each side's reference
    mono = write_audio(tmp_path / "m.wav", tone(1.0))
    vgm = tmp_path / "m.vgm"
    assert_ok(cli("convert", mono, "-o", vgm, *SINES))
    s = {k: float(v) for k, v in _side_scores(cli("score", mono, vgm, "--sides")).items()}
    assert abs(s["left_db"] - s["right_db"]) < 0.5 and s["distance_db"] < 5, s


def test_score_sides_leaves_out_a_silent_side_and_refuses_a_plot(tmp_path):
    x = np.hstack([tone(1.0)[:, None], np.zeros((RATE, 1))])
    src = write_audio(tmp_path / "l.wav", x)
    vgm = tmp_path / "l.vgm"
    assert_ok(cli("convert", src, "-o", vgm, *SINES))
    s = _side_scores(cli("score", src, vgm, "--sides"))
    assert s["right_db"] == "silent reference" and float(s["distance_db"]) == float(s["left_db"])
    assert_error(cli("score", src, vgm, "--sides", "--plot", tmp_path / "p.png"), 2,
                 "leave out --sides")
    assert not (tmp_path / "p.png").exists()


def test_score_with_adplay(tmp_path):
    if shutil.which("adplay") is None:
        pytest.skip("adplay not on PATH")
    src = write_audio(tmp_path / "s.wav", tone(1.0))
    vgm = tmp_path / "s.vgm"
    assert_ok(cli("convert", src, "-o", vgm, *SINES))
    result = cli("score", src, vgm, "--player", "adplay")
    assert_ok(result)
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("distance_db:")]
    assert len(line) == 1 and math.isfinite(float(line[0].split(":", 1)[1])), result.stdout


def test_version_and_help(tmp_path):
    result = cli("--version")
    assert result.exit_code == 0 and "wav2vgm" in result.stdout
    for cmd in ([], ["convert"], ["render"], ["info"], ["score"]):
        result = cli(*cmd, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "wav2vgm", "convert", "--help"],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().startswith("Usage: wav2vgm convert"), proc.stdout.decode()[:200]


@pytest.mark.skipif(sys.platform == "win32", reason="needs the resource module")
def test_wav_with_an_absurd_sample_rate_exits_3(tmp_path):
    import resource

    data = bytearray(wav_bytes(tone(0.05, rate=8000), rate=8000))
    data[24:28] = (385898018).to_bytes(4, "little")     # the fmt chunk's sample rate
    src = tmp_path / "odd.wav"
    src.write_bytes(bytes(data))

    def limit():            # 8 GiB of address space: the 29 GiB filter fails at once everywhere
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    proc = subprocess.run([sys.executable, "-m", "wav2vgm.cli", "convert", str(src), *SINES],
                          capture_output=True, timeout=120, preexec_fn=limit)
    err = proc.stderr.decode()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert proc.returncode == 3, err


def test_render_reports_progress_and_quiet_silences_it(tmp_path):
    from wav2vgm.opl3.render import render_vgm
    from wav2vgm.vgm import read_vgm
    src = write_audio(tmp_path / "s.wav", tone(1.0))
    vgm = tmp_path / "s.vgm"
    assert_ok(cli("convert", src, "-o", vgm, *SINES))
    seen = {"total": 0, "done": 0}

    def factory(total):
        seen["total"] = total
        return lambda k: seen.__setitem__("done", seen["done"] + k)
    y = render_vgm(read_vgm(str(vgm)), rate_hz=None, progress=factory)
    assert seen["total"] == y.shape[0] == seen["done"] > 0
    result = cli("render", vgm, "-o", tmp_path / "q.wav", "-q")
    assert_ok(result)
    assert result.stderr == "" and sf.info(str(tmp_path / "q.wav")).duration > 0.9


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_the_command_starts_numpy_with_one_blas_thread_unless_told_otherwise():
    # numpy's BLAS threads spin after each small product and gain the converter nothing
    code = ("import os, wav2vgm.cli, numpy; "
            "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    plain = subprocess.run([sys.executable, "-c",
                            "import os, numpy; print(len(os.listdir('/proc/self/task')))"],
                           env=env, capture_output=True, text=True, check=True).stdout.split()
    if plain == ["1"]:
        pytest.skip("numpy starts no BLAS thread here (one core?): nothing to check")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["1", "1"], (out, plain)             # one thread in the whole process
    env["OPENBLAS_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0] == "2"                               # the user's setting stays
