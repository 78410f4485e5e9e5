"""Tests for wav2vgm.vgm: writer, wait encoding, min-wait rule, reader, errors, strict check."""

from __future__ import annotations

import gzip
import io
import struct
import subprocess

import numpy as np
import pytest

from wav2vgm.errors import OutputError, ParameterError, VgmError
from wav2vgm.opl3.registers import CLOCK_HZ
from wav2vgm.vgm import (
    HEADER_SIZE,
    MIN_WAIT_SAMPLES,
    Gd3,
    VgmWriter,
    check_strict,
    read_vgm,
    vgm_bytes,
    vgm_statistics,
    write_vgm,
)


def u32(data: bytes, off: int) -> int:
    return struct.unpack_from("<I", data, off)[0]


def stream_of(data: bytes) -> bytes:
    """The command bytes of one of our files: from 0x100 up to and including 0x66."""
    gd3_pos = 0x14 + u32(data, 0x14)
    return data[HEADER_SIZE:gd3_pos]


def craft(stream: bytes, *, version: int = 0x171, gd3: bytes | None = None,
          header_size: int = 0x100, ymf262_clock: int = CLOCK_HZ, eof: bool = True) -> bytes:
    """A hand-made VGM file: header, ``stream`` as is, optional GD3 bytes."""
    head = bytearray(header_size)
    head[0:4] = b"Vgm "
    struct.pack_into("<I", head, 0x08, version)
    if header_size >= 0x40 and version >= 0x150:
        struct.pack_into("<I", head, 0x34, header_size - 0x34)
    if header_size >= 0x60:
        struct.pack_into("<I", head, 0x5C, ymf262_clock)
    body = bytes(head) + stream
    if gd3 is not None:
        struct.pack_into("<I", head, 0x14, len(body) - 0x14)
        body = bytes(head) + stream + gd3
    if eof:
        body = body[:4] + struct.pack("<I", len(body) - 4) + body[8:]
    return body


def sine_events(seconds: float = 1.0) -> list[tuple[int, int, int]]:
    """Channel 0 playing 440 Hz from op2 (additive, op1 silent, EGT sustain) for ``seconds``."""
    fnum = round(440 * 2 ** (20 - 4) / 49716)
    setup = [
        (0x105, 0x01),
        (0x20, 0x21), (0x40, 0x3F), (0x60, 0xF0), (0x80, 0x0F), (0xE0, 0x00),
        (0x23, 0x21), (0x43, 0x00), (0x63, 0xF0), (0x83, 0x0F), (0xE3, 0x00),
        (0xC0, 0x31), (0xA0, fnum & 0xFF),
    ]
    events = [(0, r, v) for r, v in setup]
    events.append((64, 0xB0, 0x20 | (4 << 2) | (fnum >> 8)))
    events.append((64 + round(seconds * 44100), 0xB0, (4 << 2) | (fnum >> 8)))
    return events


# --------------------------------------------------------------------------------------------
# Writer and roundtrip
# --------------------------------------------------------------------------------------------

def test_header_layout_and_eof_exact():
    data = vgm_bytes([(0, 0x20, 1), (441, 0x120, 2)], gd3=Gd3(title="x"))
    assert data[:4] == b"Vgm "
    assert u32(data, 0x04) == len(data) - 4
    assert u32(data, 0x08) == 0x171
    assert u32(data, 0x34) == 0xCC
    assert u32(data, 0x5C) == CLOCK_HZ
    assert u32(data, 0x18) == 441
    assert stream_of(data) == bytes([0x5E, 0x20, 1, 0x61, 0xB9, 0x01, 0x5F, 0x20, 2, 0x66])
    gd3_pos = 0x14 + u32(data, 0x14)
    assert data[gd3_pos:gd3_pos + 4] == b"Gd3 "
    assert check_strict(data) == []


def test_roundtrip_regs_values_times_gd3():
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.choice([0, 0, 40, 41, 441, 735, 882, 70000], size=300))
    regs = rng.integers(0, 0x200, size=300)
    values = rng.integers(0, 256, size=300)
    events = list(zip(times.tolist(), regs.tolist(), values.tolist()))
    tag = Gd3(title="Tïtle", title_jp="題名", game="g", author="a", date="2026",
              notes="line 1\nline 2")
    data = vgm_bytes(events, gd3=tag, end_samples=int(times[-1]) + 1000)
    vgm = read_vgm(data)
    assert vgm.version == 0x171
    assert vgm.ymf262_clock == CLOCK_HZ and vgm.ym3812_clock == 0
    assert vgm.times.dtype == np.int64 and vgm.regs.dtype == np.uint16
    assert vgm.values.dtype == np.uint8
    np.testing.assert_array_equal(vgm.times, times)     # all gaps >= 40: exact
    np.testing.assert_array_equal(vgm.regs, regs)
    np.testing.assert_array_equal(vgm.values, values)
    assert vgm.total_samples == vgm.end_time == int(times[-1]) + 1000
    assert vgm.gd3 == tag
    assert vgm.gd3.system == "PC / AdLib OPL3" and vgm.gd3.creator == "wav2vgm"
    assert not vgm.truncated and not vgm.dual_chip and vgm.n_other_commands == 0
    assert check_strict(data) == []


def test_roundtrip_any_gaps_follow_min_wait_rule():
    rng = np.random.default_rng(2)
    intended = np.cumsum(rng.integers(0, 120, size=500))
    events = [(int(t), 0xA0 + i % 9, i % 256) for i, t in enumerate(intended)]
    data = vgm_bytes(events)
    vgm = read_vgm(data)
    # Expected emitted times: a new group starts at max(intended, previous group + 40).
    expected, last_group, prev_t = [], None, None
    for t in intended.tolist():
        if t == prev_t:
            expected.append(last_group)
            continue
        g = t if last_group is None else max(t, last_group + 40)
        expected.append(g)
        last_group, prev_t = g, t
    np.testing.assert_array_equal(vgm.times, expected)
    assert np.all(vgm.times >= intended)
    gaps = np.diff(np.unique(vgm.times))
    assert gaps.min() >= 40
    assert vgm.total_samples == max(expected[-1], int(intended[-1]))
    assert check_strict(data) == []


def test_min_wait_debt_rule():
    events = [(0, 0x20, 1), (10, 0x20, 2), (110, 0x20, 3), (120, 0x20, 4), (130, 0x20, 5),
              (400, 0x20, 6)]
    vgm = read_vgm(vgm_bytes(events))
    # 10 -> delayed to 40; 110 keeps its absolute time; 120 -> 150, 130 -> 190; 400 on time.
    assert vgm.times.tolist() == [0, 40, 110, 150, 190, 400]


def test_writer_clocks_and_close_end():
    out = io.BytesIO()
    w = VgmWriter(out)
    w.write(0x20, 1)
    w.wait(10)
    w.write(0x20, 2)
    assert w.time_samples == 10 and w.emitted_samples == 40
    w.wait(5)
    assert w.close() == 40          # the file never ends before what was emitted
    assert u32(out.getvalue(), 0x18) == 40
    assert w.close() == 40          # idempotent
    with pytest.raises(OutputError):
        w.write(0x20, 3)


def test_writer_at_stream_offset():
    out = io.BytesIO()
    out.write(b"prefix")
    with VgmWriter(out) as w:
        w.write(0x20, 1)
        w.wait(100)
    data = out.getvalue()[6:]
    assert check_strict(data) == []
    assert read_vgm(data).total_samples == 100


@pytest.mark.parametrize("n_samples, expected", [
    (1, b"\x70"),
    (16, b"\x7f"),
    (17, b"\x61\x11\x00"),
    (735, b"\x62"),
    (882, b"\x63"),
    (65535, b"\x61\xff\xff"),
    (65536, b"\x61" + (65496).to_bytes(2, "little") + b"\x61\x28\x00"),
    (200000, b"\x61\xff\xff" * 3 + b"\x61" + (200000 - 3 * 65535).to_bytes(2, "little")),
])
def test_wait_encoding(n_samples, expected):
    data = vgm_bytes([(0, 0x20, 1), (n_samples, 0x20, 2)], min_wait=0)
    assert stream_of(data) == b"\x5e\x20\x01" + expected + b"\x5e\x20\x02\x66"
    vgm = read_vgm(data)
    assert vgm.times.tolist() == [0, n_samples]
    assert vgm.total_samples == n_samples


def test_bad_parameters():
    with pytest.raises(ParameterError, match="0x200"):
        vgm_bytes([(0, 0x200, 1)])
    with pytest.raises(ParameterError, match="256"):
        vgm_bytes([(0, 0x20, 256)])
    with pytest.raises(ParameterError, match="earlier"):
        vgm_bytes([(10, 0x20, 1), (5, 0x20, 1)])
    with pytest.raises(ParameterError, match="-1"):
        VgmWriter(io.BytesIO()).wait(-1)
    with pytest.raises(ParameterError, match="NUL"):
        Gd3(title="a\x00b").to_bytes()


def test_write_many_is_the_same_as_one_write_per_pair():
    rng = np.random.default_rng(3)
    a, b = io.BytesIO(), io.BytesIO()
    one, many = VgmWriter(a), VgmWriter(b)
    for _ in range(20):
        n = int(rng.integers(0, 6))
        regs = rng.integers(0, 0x200, n)
        vals = rng.integers(0, 256, n).astype(np.uint8)
        for r, v in zip(regs.tolist(), vals.tolist()):
            one.write(r, v)
        many.write_many(regs, vals)
        gap = int(rng.integers(0, 100))
        one.wait(gap)
        many.wait(gap)
    one.close()
    many.close()
    assert a.getvalue() == b.getvalue()
    assert one.n_writes == many.n_writes > 0


def test_write_many_checks_its_arrays():
    w = VgmWriter(io.BytesIO())
    with pytest.raises(ParameterError, match="0x200"):
        w.write_many([0x20, 0x200], [1, 2])
    with pytest.raises(ParameterError, match="256"):
        w.write_many([0x20, 0x40], [1, 256])
    with pytest.raises(ParameterError, match="same length"):
        w.write_many([0x20, 0x40], [1])
    with pytest.raises(ParameterError, match="integers"):
        w.write_many([0x20], [1.5])
    assert w.n_writes == 0


def test_writer_needs_seekable_output():
    class Pipe(io.RawIOBase):
        def writable(self):
            return True

        def seekable(self):
            return False

    with pytest.raises(OutputError, match="not seekable"):
        VgmWriter(Pipe())


# --------------------------------------------------------------------------------------------
# write_vgm: files, vgz, atomicity, stdout
# --------------------------------------------------------------------------------------------

def test_write_vgm_file_and_vgz_roundtrip_deterministic(tmp_path):
    events = sine_events(0.5)
    write_vgm(tmp_path / "a.vgm", events)
    plain = (tmp_path / "a.vgm").read_bytes()
    assert plain == vgm_bytes(events)
    write_vgm(tmp_path / "a.vgz", events)
    first = (tmp_path / "a.vgz").read_bytes()
    write_vgm(str(tmp_path / "b.VGZ"), events)
    assert (tmp_path / "b.VGZ").read_bytes() == first
    assert first[:2] == b"\x1f\x8b"
    assert gzip.decompress(first) == plain
    a, b = read_vgm(tmp_path / "a.vgm"), read_vgm(tmp_path / "a.vgz")
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.regs, b.regs)
    assert check_strict(first) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.vgm", "a.vgz", "b.VGZ"]


@pytest.mark.parametrize("name", ["out.vgm", "out.vgz"])
def test_write_vgm_atomic_on_failure(tmp_path, name):
    def events():
        yield (0, 0x20, 1)
        yield (100, 0x20, 2)
        raise RuntimeError("boom")

    with pytest.raises(OutputError, match=name) as info:
        write_vgm(tmp_path / name, events())
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []

    # An existing file is left untouched.
    (tmp_path / name).write_bytes(b"old")
    with pytest.raises(OutputError):
        write_vgm(tmp_path / name, events())
    assert (tmp_path / name).read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_write_vgm_bad_event_cleans_up(tmp_path):
    with pytest.raises(ParameterError):
        write_vgm(tmp_path / "x.vgm", [(0, 0x20, 1), (0, 0x999, 1)])
    assert list(tmp_path.iterdir()) == []


def test_write_vgm_missing_folder(tmp_path):
    target = tmp_path / "no" / "such" / "x.vgm"
    with pytest.raises(OutputError, match="x.vgm"):
        write_vgm(target, [(0, 0x20, 1)])


def test_write_vgm_stdout(capsysbinary):
    events = [(0, 0x20, 1), (441, 0x20, 2)]
    write_vgm("-", events)
    assert capsysbinary.readouterr().out == vgm_bytes(events)


# --------------------------------------------------------------------------------------------
# Reader: other chips, old versions, truncation, errors
# --------------------------------------------------------------------------------------------

def test_reader_skips_other_chips():
    stream = (
        b"\x67\x66\x00" + struct.pack("<I", 5) + b"\x5e\x5f\x66\x61\x00"   # data block
        + b"\x50\x9f"                       # SN76489
        + b"\x5e\x20\x01"
        + b"\x52\x2a\x80"                   # YM2612 port 0
        + b"\x50\x66"
        + b"\x61\x10\x00"
        + b"\x5f\x05\x01"
        + b"\x90\x00\x02\x00\x2a" + b"\x95\x00\x00\x00\x00"
        + b"\x83"                           # YM2612 DAC write + wait 3
        + b"\x5a\x40\x3f" + b"\x5b\x41\x3f" + b"\x5c\x42\x3f"
        + b"\xe0\x00\x00\x00\x00" + b"\x4f\x00" + b"\x68\x66" + bytes(10)
        + b"\x62\x63\x70"
        + b"\x5e\xb0\x20"
        + b"\x66"
    )
    vgm = read_vgm(craft(stream, gd3=Gd3().to_bytes()))
    assert vgm.regs.tolist() == [0x20, 0x105, 0x40, 0x41, 0x42, 0xB0]
    assert vgm.values.tolist() == [1, 1, 0x3F, 0x3F, 0x3F, 0x20]
    assert vgm.times.tolist() == [0, 16, 19, 19, 19, 19 + 735 + 882 + 1]
    assert vgm.end_time == 19 + 735 + 882 + 1
    assert vgm.n_other_commands == 10
    assert not vgm.truncated


def test_reader_old_version_data_at_0x40_and_ym3812():
    head = bytearray(0x40)
    head[0:4] = b"Vgm "
    struct.pack_into("<I", head, 0x08, 0x110)
    struct.pack_into("<I", head, 0x34, 0x1000)   # not a data offset before 1.50
    data = bytes(head) + b"\x5a\xbd\x20\x62\x66"
    data = data[:4] + struct.pack("<I", len(data) - 4) + data[8:]
    vgm = read_vgm(data)
    assert vgm.version == 0x110
    assert vgm.regs.tolist() == [0xBD] and vgm.end_time == 735
    assert vgm.gd3 is None and vgm.ymf262_clock == 0


def test_reader_dual_chip_flag():
    data = craft(b"\xae\x20\x01\x66", ymf262_clock=CLOCK_HZ | 1 << 30)
    vgm = read_vgm(data)
    assert vgm.dual_chip and vgm.ymf262_clock == CLOCK_HZ
    assert vgm.n_writes == 0 and vgm.n_other_commands == 1


def test_reader_clean_end_without_0x66_is_truncated():
    vgm = read_vgm(craft(b"\x5e\x20\x01\x61\x10\x00"))
    assert vgm.truncated and vgm.end_time == 16 and vgm.regs.tolist() == [0x20]


def test_reader_sources(tmp_path):
    data = vgm_bytes([(0, 0x20, 1)])
    (tmp_path / "f.vgm").write_bytes(data)
    for source in (data, bytearray(data), io.BytesIO(data), tmp_path / "f.vgm",
                   str(tmp_path / "f.vgm"), gzip.compress(data)):
        assert read_vgm(source).regs.tolist() == [0x20]


def _bad_files() -> dict[str, tuple[bytes, str]]:
    good = vgm_bytes([(0, 0x20, 1), (100, 0x20, 2)])
    gd3_pos = 0x14 + u32(good, 0x14)
    bad_magic_gd3 = bytearray(good)
    bad_magic_gd3[gd3_pos:gd3_pos + 4] = b"Gd4 "
    long_gd3 = bytearray(good)
    struct.pack_into("<I", long_gd3, gd3_pos + 8, 10_000)
    few_strings = b"Gd3 " + struct.pack("<II", 0x100, 4) + b"a\x00\x00\x00"
    bad_utf16 = b"Gd3 " + struct.pack("<II", 0x100, 24) + b"\x00\xd8\x00\x00" + b"\x00" * 20
    gd3_past_end = bytearray(good)
    struct.pack_into("<I", gd3_past_end, 0x14, 0x10_000)
    data_past_end = bytearray(good)
    struct.pack_into("<I", data_past_end, 0x34, 0x10_000)
    loop_past_end = bytearray(good)
    struct.pack_into("<I", loop_past_end, 0x1C, 0x10_000)
    return {
        "empty": (b"", "empty"),
        "bad magic": (b"VGM " + good[4:], "magic"),
        "truncated header": (good[:0x30], "0x30"),
        "mid-command": (craft(b"\x5e\x20\x01\x61\x10\x00\x5e\x20"), "0x5E at offset 0x106"),
        "mid-wait": (craft(b"\x61\x10"), "0x61"),
        "mid data block": (craft(b"\x67\x66\x00" + struct.pack("<I", 100) + b"\x00" * 10 + b"\x66"),
                           "data block"),
        "unknown command": (craft(b"\x5e\x20\x01\x20\x00\x66"), "0x20 at offset 0x103"),
        "unknown 0x64": (craft(b"\x64\x00\x00\x00\x66"), "0x64"),
        "data offset past end": (bytes(data_past_end), "0x34"),
        "gd3 offset past end": (bytes(gd3_past_end), "0x14"),
        "loop offset past end": (bytes(loop_past_end), "0x1C"),
        "gd3 bad magic": (bytes(bad_magic_gd3), "magic"),
        "gd3 too long": (bytes(long_gd3), "runs past"),
        "gd3 few strings": (craft(b"\x66", gd3=few_strings), "expected 11"),
        "gd3 bad utf16": (craft(b"\x66", gd3=bad_utf16), "UTF-16"),
        "gd3 cut": (craft(b"\x66", gd3=b"Gd3 \x00"), "need at least 12"),
        "corrupt gzip": (gzip.compress(good)[:40], "gzip"),
    }


@pytest.mark.parametrize("case", list(_bad_files()))
def test_reader_errors(case):
    data, fragment = _bad_files()[case]
    with pytest.raises(VgmError) as info:
        read_vgm(data)
    assert type(info.value) is VgmError
    assert fragment in str(info.value)


def test_reader_never_leaks_other_exceptions():
    good = vgm_bytes(sine_events(0.1), gd3=Gd3(title="t"))
    rng = np.random.default_rng(3)
    for i in range(400):
        data = bytearray(good)
        if i % 2:
            data = data[:rng.integers(0, len(data))]
        for _ in range(rng.integers(1, 4)):
            if data:
                data[rng.integers(0, len(data))] = rng.integers(0, 256)
        try:
            read_vgm(bytes(data))
        except VgmError:
            pass


# --------------------------------------------------------------------------------------------
# check_strict
# --------------------------------------------------------------------------------------------

def _patched(data: bytes, off: int, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<I", out, off, value)
    return bytes(out)


def test_check_strict_reports_each_problem():
    events = [(0, 0x20, 1), (100, 0x20, 2)]
    good = vgm_bytes(events)
    assert check_strict(good) == []
    short_wait = vgm_bytes([(0, 0x20, 1), (10, 0x20, 2)], min_wait=0)
    no_gd3 = craft(stream_of(good))
    gd3_pos = 0x14 + u32(good, 0x14)
    gap = good[:gd3_pos] + b"\x00" + good[gd3_pos:]
    gap = _patched(_patched(gap, 0x14, gd3_pos + 1 - 0x14), 0x04, len(gap) - 4)
    other_cmd = craft(b"\x50\x00" + stream_of(good), gd3=Gd3().to_bytes())
    cases = {
        "magic": b"Vgm!" + good[4:],
        "version": _patched(good, 0x08, 0x151),
        "EOF offset": _patched(good, 0x04, len(good)),
        "total samples": _patched(good, 0x18, 99),
        "YMF262 clock": _patched(good, 0x5C, 0),
        "data offset": _patched(good, 0x34, 0x4C),
        "shorter than 40": short_wait,
        "no GD3": no_gd3,
        "does not follow": gap,
        "not one of": other_cmd,
        "no end-of-data": good[:gd3_pos - 1] + good[gd3_pos:],
        "GD3 tag at": good[:-2] + b"\x00",
        "shorter than the": good[:0x80],
    }
    for fragment, data in cases.items():
        problems = check_strict(data)
        assert problems, fragment
        assert any(fragment in p for p in problems), (fragment, problems)
    # Each single defect is reported on its own, not drowned in follow-up noise.
    assert len(check_strict(_patched(good, 0x08, 0x151))) == 1
    assert len(check_strict(short_wait)) == 1


# --------------------------------------------------------------------------------------------
# Reference player
# --------------------------------------------------------------------------------------------

@pytest.mark.adplay
def test_adplay_renders_440_hz_sine(tmp_path, adplay_path):
    sf = pytest.importorskip("soundfile")
    vgm_path = tmp_path / "in.vgm"
    wav_path = tmp_path / "out.wav"
    # A 0.1 s tail after the key-off, so adplay renders the release before it stops.
    write_vgm(vgm_path, sine_events(1.0), gd3=Gd3(title="440 Hz"), end_samples=64 + 44100 + 4410)
    assert check_strict(vgm_path.read_bytes()) == []
    subprocess.run(
        [adplay_path, "-e", "nuked", "--stereo", "--16bit", "-f", "49716", "-O", "disk",
         "-d", str(wav_path), str(vgm_path)],
        check=True, timeout=30, capture_output=True, stdin=subprocess.DEVNULL,
    )
    audio, rate_hz = sf.read(wav_path, always_2d=True)
    assert rate_hz == 49716
    mono = audio.mean(axis=1)
    loud = np.flatnonzero(np.abs(mono) > 1e-3)
    sounding_s = (loud[-1] - loud[0] + 1) / rate_hz
    assert abs(sounding_s - 1.0) < 0.05, sounding_s
    # adplay 2.3.3 plays about 2 % fast here (0.978 s sounding); the file itself says 1.000 s.
    assert len(mono) / rate_hz > sounding_s
    x = mono[loud[0]:loud[-1] + 1]
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    peak_hz = np.argmax(spectrum) * rate_hz / len(x)
    assert abs(peak_hz - 440) < 5, peak_hz


def _timed_by_hand(times, regs, values, ticks, min_wait=40):
    """What write_timed must equal: wait / tick to every update, write_many per group."""
    out = io.BytesIO()
    w = VgmWriter(out, min_wait=min_wait)
    now = 0
    starts = np.flatnonzero(np.diff(times, prepend=-1))
    for lo, hi in zip(starts.tolist(), starts[1:].tolist() + [len(times)]):
        t = int(times[lo])
        for tick in [int(x) for x in ticks if now < x < t] + ([t] if t > now else []):
            w.wait(tick - now)
            w.tick()
            now = tick
        w.write_many(regs[lo:hi], values[lo:hi])
    w.close()
    return out.getvalue()


def test_write_timed_equals_waits_ticks_and_groups():
    rng = np.random.default_rng(5)
    ticks = np.rint(np.arange(0, 20000, 183.75)).astype(np.int64)   # 4 updates per 60 Hz frame
    times = np.sort(rng.choice(ticks, 60, replace=False))          # writes on some updates
    times = np.repeat(times, rng.integers(1, 4, times.size))      # groups of 1-3 writes
    regs = rng.integers(0, 0x200, times.size)
    values = rng.integers(0, 256, times.size)
    out = io.BytesIO()
    w = VgmWriter(out)
    half = times.size // 2 + 1
    while times[half] == times[half - 1]:
        half += 1
    w.write_timed(times[:half], regs[:half], values[:half], ticks=ticks)   # in two calls
    w.write_timed(times[half:], regs[half:], values[half:], ticks=ticks)
    w.close()
    assert out.getvalue() == _timed_by_hand(times, regs, values, ticks)
    assert check_strict(out.getvalue()) == []


@pytest.mark.parametrize("step, min_wait", [(735.0, 0), (882.0, 40), (12.0, 0), (30.0, 40),
                                             (70000.0, 40), (183.75, 200)])
def test_write_timed_equals_waits_ticks_and_groups_for_any_spacing(step, min_wait):
    # one-byte waits (735, 882, <= 16), updates closer than min_wait (debt), pauses over 65535
    rng = np.random.default_rng(int(step))
    ticks = np.unique(np.rint(np.arange(0, 400 * step, step)).astype(np.int64))
    times = np.sort(rng.choice(ticks, 40, replace=False))
    times[0] = 0                                                   # a first group at time 0
    times = np.repeat(times, rng.integers(1, 4, times.size))
    regs = rng.integers(0, 0x200, times.size)
    values = rng.integers(0, 256, times.size)
    out = io.BytesIO()
    w = VgmWriter(out, min_wait=min_wait)
    for part in np.array_split(np.arange(times.size), 3):      # groups may span calls
        w.write_timed(times[part], regs[part], values[part], ticks=ticks)
    w.close()
    assert out.getvalue() == _timed_by_hand(times, regs, values, ticks, min_wait)


def test_write_timed_refuses_times_before_now_or_unsorted():
    w = VgmWriter(io.BytesIO())
    w.wait(1000)
    with pytest.raises(ParameterError, match="sorted"):
        w.write_timed(np.array([500]), np.array([0x20]), np.array([1]))
    with pytest.raises(ParameterError, match="sorted"):
        w.write_timed(np.array([2000, 1500]), np.array([0x20, 0x21]), np.array([1, 2]))
    with pytest.raises(ParameterError, match="outside"):
        w.write_timed(np.array([2000]), np.array([0x200]), np.array([1]))


def test_advance_to_ticks_every_update_without_writes():
    ticks = np.arange(0, 5000, 735)
    fast, slow = io.BytesIO(), io.BytesIO()
    w = VgmWriter(fast)
    w.wait(100)
    w.advance_to(4000, ticks=ticks)
    w.close()
    v = VgmWriter(slow)
    v.wait(100)
    now = 100
    for t in [int(x) for x in ticks if 100 < x < 4000] + [4000]:
        v.wait(t - now)
        v.tick()
        now = t
    v.close()
    assert fast.getvalue() == slow.getvalue()
    assert read_vgm(io.BytesIO(fast.getvalue())).total_samples == 4000


def _looped(mark_after_writes: int = 1) -> bytes:
    """Two writes, a 100-sample wait, the loop point, a write, 200 samples, a write, 300 samples."""
    out = io.BytesIO()
    w = VgmWriter(out)
    w.write(0x105, 1)
    w.write(0x20, 1)
    w.wait(100)
    w.mark_loop()
    w.write(0x20, 2)
    w.wait(200)
    w.write(0x20, 3)
    w.wait(300)
    w.close()
    return out.getvalue()


def test_loop_point_in_header_checker_and_reader():
    data = _looped()
    assert check_strict(data) == []
    loop_pos = 0x1C + u32(data, 0x1C)
    # the loop point is the write after the first wait (61 64 00 is the 100-sample wait)
    assert data[loop_pos - 3:loop_pos] == b"\x61\x64\x00" and data[loop_pos] == 0x5E
    assert u32(data, 0x20) == 500 and u32(data, 0x18) == 600
    vgm = read_vgm(data)
    assert vgm.loop_offset == loop_pos and vgm.loop_samples == 500
    assert vgm.loop_write == 2                     # the two writes before the mark play once
    assert vgm_statistics(vgm)["loop"].startswith("0.011 s, from byte")
    # a file without a loop keeps both fields 0
    plain = vgm_bytes([(0, 0x20, 1), (100, 0x20, 2)])
    assert u32(plain, 0x1C) == 0 and u32(plain, 0x20) == 0
    assert read_vgm(plain).loop_samples == 0 and vgm_statistics(read_vgm(plain))["loop"] == "none"
    assert read_vgm(plain).loop_write == -1


def test_checker_finds_bad_loops():
    data = bytearray(_looped())
    loop_pos = 0x1C + u32(data, 0x1C)
    bad = bytearray(data)
    struct.pack_into("<I", bad, 0x20, 499)
    assert any("loop samples at 0x20 is 499" in p for p in check_strict(bytes(bad)))
    bad = bytearray(data)
    struct.pack_into("<I", bad, 0x1C, loop_pos + 1 - 0x1C)       # inside a write command
    assert any("not to a command" in p for p in check_strict(bytes(bad)))
    bad = bytearray(data)
    struct.pack_into("<I", bad, 0x1C, 0)                         # samples without an offset
    assert any("without a loop offset" in p for p in check_strict(bytes(bad)))


def test_a_loop_of_no_length_is_left_out():
    out = io.BytesIO()
    w = VgmWriter(out)
    w.write(0x20, 1)
    w.wait(100)
    w.mark_loop()                       # at the end: nothing follows
    w.close()
    data = out.getvalue()
    assert u32(data, 0x1C) == 0 and u32(data, 0x20) == 0 and check_strict(data) == []



def test_a_loop_lasts_at_least_the_shortest_wait_players_keep():
    # AdPlug drops waits under 40 samples: a 3-sample loop passed no time, and adplay
    # played it for ever
    out = io.BytesIO()
    w = VgmWriter(out)
    w.mark_loop()
    w.write(0x20, 1)
    w.close(end_samples=3)
    data = out.getvalue()
    assert u32(data, 0x20) == MIN_WAIT_SAMPLES and u32(data, 0x18) == MIN_WAIT_SAMPLES
    assert check_strict(data) == []

def test_statistics_say_how_late_a_write_queue_plays_the_busiest_writes():
    # players on the Nuked core apply one write every 2 native samples (49,716 Hz)
    sparse = read_vgm(vgm_bytes([(t, 0x20, t % 7) for t in range(0, 4000, 100)]))
    assert float(vgm_statistics(sparse)["queue_delay_max_ms"]) == pytest.approx(2 / 49.716, abs=0.01)
    # 500 writes at once (1,000 native samples, 20 ms), then one every 40 samples, which it takes
    burst = [(0, 0x40 + i % 16, i % 60) for i in range(500)]
    burst += [(100 + t, 0x20, t % 2) for t in range(0, 2000, 40)]
    busy = vgm_statistics(read_vgm(vgm_bytes(burst)))
    assert float(busy["queue_delay_max_ms"]) == pytest.approx(1000 / 49.716, rel=0.02)
