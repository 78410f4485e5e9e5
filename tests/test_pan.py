"""Stereo panning: two-channel inputs come out on the OPL3's left, right or both outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wav2vgm.audio import open_audio
from wav2vgm.batch import convert_file
from wav2vgm.convert import ConvertOptions
from wav2vgm.methods import pan
from wav2vgm.methods.base import VoiceFrames
from wav2vgm.opl3 import registers as R
from wav2vgm.opl3.render import render_vgm
from wav2vgm.quality import adplay_render
from wav2vgm.vgm import read_vgm

from conftest import needs_adplay

RATE = 44100


def _tones(path: Path, *, seconds: float = 2.0) -> Path:
    """440 Hz on the left only, 660 Hz on the right only, 220 Hz on both."""
    t = np.arange(int(seconds * RATE)) / RATE
    centre = 0.2 * np.sin(2 * np.pi * 220 * t)
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + centre
    right = 0.3 * np.sin(2 * np.pi * 660 * t) + centre
    sf.write(path, np.column_stack([left, right]), RATE)
    return path


def _levels_db(y: np.ndarray, rate: int, freqs=(220, 440, 660)) -> list[float]:
    """Peak spectrum level (dB) of a 1 s middle stretch of ``y`` near each frequency."""
    mid = y[rate // 2: rate // 2 + rate]
    spec = np.abs(np.fft.rfft(mid * np.hanning(mid.size)))
    f = np.fft.rfftfreq(mid.size, 1.0 / rate)
    return [20 * np.log10(spec[np.abs(f - x) < 6].max() + 1e-9) for x in freqs]


@pytest.mark.parametrize("method", ["sines", "model"])
def test_left_and_right_tones_come_out_on_their_own_side(tmp_path, method):
    src = _tones(tmp_path / "tones.wav")
    out = tmp_path / "tones.vgm"
    convert_file(str(src), str(out), ConvertOptions(method=method))
    y = render_vgm(read_vgm(str(out)), rate_hz=RATE)
    c_l, a_l, b_l = _levels_db(y[:, 0], RATE)
    c_r, a_r, b_r = _levels_db(y[:, 1], RATE)
    assert a_l - a_r > 40 and b_r - b_l > 40          # 440 Hz left only, 660 Hz right only
    assert a_l - b_l > 40 and b_r - a_r > 40
    assert abs(c_l - c_r) < 1.0                      # 220 Hz in the middle


def test_mono_option_plays_everything_on_both_sides(tmp_path):
    src = _tones(tmp_path / "tones.wav")
    out = tmp_path / "tones.vgm"
    convert_file(str(src), str(out), ConvertOptions(method="sines", stereo=False))
    y = render_vgm(read_vgm(str(out)), rate_hz=RATE)
    left, right = _levels_db(y[:, 0], RATE), _levels_db(y[:, 1], RATE)
    np.testing.assert_allclose(left, right, atol=0.5)
    assert min(left) > max(left) - 10


@needs_adplay
@pytest.mark.adplay
def test_reference_player_pans_the_tones(tmp_path):
    src = _tones(tmp_path / "tones.wav")
    out = tmp_path / "tones.vgm"
    convert_file(str(src), str(out), ConvertOptions(method="sines"))
    y, rate = adplay_render(str(out))
    c_l, a_l, b_l = _levels_db(y[:, 0].astype(np.float64), rate)
    c_r, a_r, b_r = _levels_db(y[:, 1].astype(np.float64), rate)
    assert a_l - a_r > 40 and b_r - b_l > 40
    assert abs(c_l - c_r) < 1.0


@pytest.mark.parametrize("method", ["sines", "model"])
def test_split_sides_plays_each_side_on_its_own_channels(tmp_path, method):
    """With split_sides each side is converted on its own half of the channels, which play
    on that side only; a mono input is converted as without it."""
    src = _tones(tmp_path / "tones.wav")
    out = tmp_path / "split.vgm"
    convert_file(str(src), str(out), ConvertOptions(method=method, split_sides=True))
    vgm = read_vgm(str(out))
    # every channel's 0xC0 writes route it to one side: channels 0-8 left, 9-17 right
    used = set()
    for ch in range(R.N_CHANNELS):
        reg = R.channel_register(0xC0, ch)
        bits = {int(v) & R.OUT_STEREO for v in vgm.values[vgm.regs == reg]}
        assert bits <= {R.OUT_LEFT if ch < 9 else R.OUT_RIGHT}, (ch, bits)
        used |= bits
    assert used == {R.OUT_LEFT, R.OUT_RIGHT}
    y = render_vgm(vgm, rate_hz=RATE)
    c_l, a_l, b_l = _levels_db(y[:, 0], RATE)
    c_r, a_r, b_r = _levels_db(y[:, 1], RATE)
    assert a_l - a_r > 40 and b_r - b_l > 40          # 440 Hz left only, 660 Hz right only
    assert abs(c_l - c_r) < 3.0                      # 220 Hz on both: played on each side
    mono = tmp_path / "m.wav"
    sf.write(mono, np.asarray(sf.read(src)[0]).mean(axis=1), RATE)
    for split in (False, True):
        convert_file(str(mono), str(tmp_path / f"m{split}.vgm"),
                     ConvertOptions(method="sines", split_sides=split))
    assert (tmp_path / "mFalse.vgm").read_bytes() == (tmp_path / "mTrue.vgm").read_bytes()


def test_split_sides_serves_the_quieter_side_of_a_hard_panned_mix(tmp_path):
    """samples/melody.wav on the left, chord.wav at half its level on the right (the stereo
    benchmark's hard-panned mix): each side scored against its own side of the input, the
    quieter (right) one is much closer with split_sides, and the two together too."""
    from wav2vgm.audio import load_audio, write_wav
    from wav2vgm.quality import render_for_score, side_distances
    root = Path(__file__).resolve().parents[1] / "samples"
    a, b = (load_audio(str(root / f"{n}.wav"), target_rate_hz=RATE)[0] for n in ("melody", "chord"))
    n = min(a.size, b.size)
    x = 0.8 * np.column_stack([a[:n], 0.5 * b[:n]]).astype(np.float32)
    write_wav(str(tmp_path / "hard.wav"), x, RATE)
    scores = {}
    for split in (False, True):
        out = tmp_path / f"{split}.vgm"
        convert_file(str(tmp_path / "hard.wav"), str(out), ConvertOptions(split_sides=split))
        d = side_distances(x, render_for_score(str(out), stereo=True))
        scores[split] = (d["left"].distance_db, d["right"].distance_db)
    assert scores[True][1] < scores[False][1] - 3, scores
    assert sum(scores[True]) < sum(scores[False]) - 3, scores


def test_split_sides_needs_two_voices():
    from wav2vgm.errors import ParameterError
    with pytest.raises(ParameterError, match="at least 2 voices, got 1"):
        ConvertOptions(split_sides=True, voices=1)


@pytest.mark.parametrize("stereo", [True, False])
def test_two_identical_channels_convert_like_the_mono_file(tmp_path, stereo):
    t = np.arange(RATE) / RATE
    x = (0.3 * np.sin(2 * np.pi * 330 * t) + 0.1 * np.sin(2 * np.pi * 1250 * t)).astype(np.float32)
    for name, data in (("mono", x), ("dual", np.column_stack([x, x]))):
        (tmp_path / name).mkdir()
        sf.write(tmp_path / name / "x.wav", data, RATE, subtype="FLOAT")
        convert_file(str(tmp_path / name / "x.wav"), str(tmp_path / name / "x.vgm"),
                     ConvertOptions(method="sines", stereo=stereo))
    assert (tmp_path / "mono" / "x.vgm").read_bytes() == (tmp_path / "dual" / "x.vgm").read_bytes()


def test_side_blocks_hold_the_mono_mix_and_both_channels(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.uniform(-0.5, 0.5, (30000, 2))
    sf.write(tmp_path / "s.wav", x, 48000, subtype="FLOAT")
    with open_audio(str(tmp_path / "s.wav"), target_rate_hz=RATE, block_seconds=0.1) as stream:
        mono = np.concatenate(list(stream.blocks()))
        sides = np.concatenate(list(stream.blocks(sides=True)))
    with open_audio(str(tmp_path / "s.wav"), target_rate_hz=48000) as stream:
        raw = np.concatenate(list(stream.blocks(sides=True)))
    assert sides.shape == (mono.size, 3)
    np.testing.assert_array_equal(sides[:, 0], mono)
    np.testing.assert_allclose(raw[:, 1:], x, atol=1e-7)            # no resampling: the channels
    np.testing.assert_allclose(sides[:, 0], sides[:, 1:].mean(axis=1), atol=1e-6)


def test_notes_split_at_silence_and_at_pitch_jumps():
    sounding = np.array([[1, 1, 1, 0, 1, 1]], bool).T
    f = np.array([[440.0, 445.0, 445.0, 0.0, 440.0, 880.0]]).T
    ids = pan.note_ids(sounding, f)[:, 0]
    assert ids.tolist() == [0, 0, 0, -1, 1, 2]
    assert pan.note_ids(sounding)[:, 0].tolist() == [0, 0, 0, -1, 1, 1]


def _one_channel(n: int, amps, f_hz) -> VoiceFrames:
    v = VoiceFrames.empty(n, 1)
    fnum, block = R.hz_to_fnum(np.asarray(f_hz, float), mult=1)
    v.fnum[:, 0], v.block[:, 0] = fnum, block
    v.amp2[:, 0] = amps
    return v


def test_a_one_sided_note_doubles_its_level_and_a_held_channel_rests_before_moving_sides():
    n = 6
    v = _one_channel(n, [0.1] * 6, [440.0] * 3 + [880.0] * 3)
    power = np.zeros((n, 1, 3), np.float32)
    power[:3, 0] = (1.0, 4.0, 0.0)            # mono, left, right: the first note is left only
    power[3:, 0] = (1.0, 1.0, 1.0)            # the second is in the middle
    out = pan.route(v, power)
    assert out.outputs[:, 0].tolist() == [R.OUT_LEFT] * 4 + [R.OUT_STEREO] * 2
    np.testing.assert_allclose(out.amp2[:, 0], [0.2, 0.2, 0.2, 0.0, 0.1, 0.1])
    np.testing.assert_array_equal(v.amp2[:, 0], np.float32(0.1))     # the input is not changed


def test_silent_frames_keep_the_last_notes_outputs():
    v = _one_channel(5, [0.1, 0.1, 0.0, 0.0, 0.1], [440.0] * 5)
    power = np.zeros((5, 1, 3), np.float32)
    power[:2, 0] = (1.0, 0.0, 4.0)            # right only
    power[4, 0] = (1.0, 1.0, 1.0)
    out = pan.route(v, power)
    assert out.outputs[:, 0].tolist() == [R.OUT_RIGHT] * 4 + [R.OUT_STEREO]


def test_a_quiet_channel_changes_sides_without_resting():
    n = 4
    v = VoiceFrames.empty(n, 2)
    fnum, block = R.hz_to_fnum(np.array([220.0, 440.0, 880.0]), mult=1)
    v.fnum[:, 0], v.block[:, 0] = fnum[0], block[0]
    v.fnum[:2, 1], v.block[:2, 1] = fnum[1], block[1]
    v.fnum[2:, 1], v.block[2:, 1] = fnum[2], block[2]
    v.amp2[:, 0] = 0.5                          # loud, in the middle
    v.amp2[:, 1] = 0.05                         # 20 dB quieter: left, then right
    power = np.zeros((n, 2, 3), np.float32)
    power[:, 0] = (1.0, 1.0, 1.0)
    power[:2, 1] = (1.0, 4.0, 0.0)
    power[2:, 1] = (1.0, 0.0, 4.0)
    out = pan.route(v, power)
    assert out.outputs[:, 1].tolist() == [R.OUT_LEFT] * 2 + [R.OUT_RIGHT] * 2
    np.testing.assert_allclose(out.amp2[:, 1], 0.1)                  # no rest frame
    assert out.outputs[:, 0].tolist() == [R.OUT_STEREO] * n


def test_split_sides_with_an_odd_number_of_voices(tmp_path):
    # 3 voices split 2 + 1: a side's own method is not itself split (it once refused its 1)
    t = np.arange(44100) / 44100
    src = tmp_path / "lr.wav"
    sf.write(src, np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 660 * t)], 1), 44100)
    out = tmp_path / "lr.vgm"
    convert_file(str(src), str(out), ConvertOptions(method="sines", voices=3, split_sides=True))
    vgm = read_vgm(str(out))
    sides = [int(v) & R.OUT_STEREO for r, v in zip(vgm.regs, vgm.values)
             if (int(r) & 0xFF) in range(0xC0, 0xC9)]
    assert sides.count(R.OUT_LEFT) >= 1 and sides.count(R.OUT_RIGHT) >= 1
