"""The conversion pipeline end to end: quality of the sines baseline and the model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wav2vgm import spectrum
from wav2vgm.batch import convert_file
from wav2vgm.convert import ConvertOptions, frame_times
from wav2vgm.errors import ParameterError
from wav2vgm.methods.loudness import HEADROOM, OVERDRIVE_DB, PLAYED_HEADROOM, loudness_gain
from wav2vgm.convert import MIN_UPDATE_SAMPLES, update_steps, update_times
from wav2vgm.methods.base import END_FADE_DB, FULL_SCALE, VoiceFrames, subdivide
from wav2vgm.methods.model import default_model_path
from wav2vgm.quality import score_vgm
from wav2vgm.vgm import MIN_WAIT_SAMPLES, check_strict, read_vgm

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
HAVE_MODEL = default_model_path().is_file()


def _sine(tmp_path, f_hz, seconds=2.0, amp=0.5):
    t = np.arange(int(seconds * 44100)) / 44100
    path = tmp_path / f"sine{int(f_hz)}.wav"
    sf.write(path, amp * np.sin(2 * np.pi * f_hz * t), 44100)
    return path


def _convert(src, tmp_path, method, **kw):
    out = tmp_path / f"{Path(src).stem}.{method}.vgm"
    convert_file(str(src), str(out), ConvertOptions(method=method, **kw))
    return out


def test_frames_are_centred_and_writes_lead_by_half_a_hop():
    c = frame_times(44100, 60.0)
    assert c[0] == 0 and c[1] == 735 and c.size == 60
    w = update_times(c, 60.0, 1)
    assert w[0] == 0 and w[1] == 368


def _equal_voices(n_voices, amp, *, fill_in=False):
    v = VoiceFrames.empty(2, 18)
    v.amp2[0, :n_voices] = amp
    v.amp2[1, 0] = amp / 10                          # a quiet frame
    if not fill_in:
        v.mult1[:] = 2                               # operator 1 apart: operator 2 alone, TL 0 at most
    return v


def test_loud_sparse_voices_keep_the_headroom_rule():
    v = _equal_voices(1, 0.5)                        # one voice: far above TL 0 already
    assert loudness_gain(v) == pytest.approx(HEADROOM / 0.5)
    assert loudness_gain(v, gain_db=-6.0) == pytest.approx(HEADROOM / 0.5 * 10 ** (-6 / 20))


def test_many_voices_are_raised_until_the_loudest_operator_overdrives():
    v = _equal_voices(10, 0.1)                       # headroom rule: each at 3000 units, under TL 0
    g = loudness_gain(v)
    assert g > HEADROOM / 1.0
    assert 0.1 * g == pytest.approx(10 ** (OVERDRIVE_DB / 20) * FULL_SCALE, rel=1e-3)


def test_the_played_sum_stays_within_its_headroom():
    v = _equal_voices(18, 0.05)                      # all 18 at TL 0 would pass PLAYED_HEADROOM
    g = loudness_gain(v)
    played = np.minimum(v.amp2[0] * g, FULL_SCALE).sum()
    assert HEADROOM / 0.9 < g
    assert 0.99 * PLAYED_HEADROOM <= played <= PLAYED_HEADROOM


def test_voices_whose_operator_1_fills_in_reach_twice_as_far_within_the_headroom():
    from wav2vgm.methods.base import FILL_IN_MAX
    from wav2vgm.methods.loudness import played_caps
    v = _equal_voices(10, 0.1, fill_in=True)
    assert np.all(played_caps(v)[0, :10] == FILL_IN_MAX) and FILL_IN_MAX == 2 * FULL_SCALE
    g = loudness_gain(v)
    played = np.minimum(v.amp2[0] * g, FILL_IN_MAX).sum()
    assert 0.99 * PLAYED_HEADROOM <= played <= PLAYED_HEADROOM       # not 10 x TL 0
    assert g < loudness_gain(_equal_voices(10, 0.1))


def test_predicted_errors_see_clipping_and_lost_partials():
    from wav2vgm.methods.loudness import operator_atoms, predicted_errors
    v = VoiceFrames.empty(3, 2)
    v.fnum[:], v.block[:] = 580, 4                                 # about 440 Hz
    v.amp2[:, 0] = (0.5, 0.05, 0.003)                                # a note decaying 44 dB
    power = operator_atoms(v)[0][:, 0] * v.amp2[:, :1] ** 2         # exactly what it plays
    g_fit = FULL_SCALE / 0.5                                       # loudest frame at TL 0
    e = predicted_errors(v, power, [g_fit, g_fit * 8, g_fit / 8, g_fit / 20])
    assert e[0] < 0.5                                              # all within TL 0-63
    assert e[1] > e[0] + 2                                         # clipped
    # 18 dB lower the tail is 62 dB down: below TL 63, within key scaling's 19.5 dB more
    # at this pitch; 26 dB lower it is lost
    assert e[2] < 0.5 and e[3] > e[0] + 2


def test_a_decaying_tone_is_not_flattened_by_the_gain(tmp_path):
    t = np.arange(2 * 44100) / 44100
    src = tmp_path / "decay.wav"
    sf.write(src, 0.6 * np.exp(-3 * t) * np.sin(2 * np.pi * 330 * t), 44100)   # 52 dB in 2 s
    from wav2vgm.audio import open_audio
    from wav2vgm.convert import analyse
    found = analyse(open_audio(str(src), target_rate_hz=44100), ConvertOptions(method="sines"))
    rule = loudness_gain(found.voices)
    judged = loudness_gain(found.voices, reference=(found.level_power, found.level_stride))
    assert judged < rule / 2                                       # the check lowers the gain
    out = _convert(src, tmp_path, "sines")
    assert score_vgm(str(src), str(out)).distance_db < 3.0         # 4.9 dB with the rule's gain


def test_a_dense_chord_does_not_clip_the_chip_output(tmp_path):
    from wav2vgm.opl3.render import render_vgm
    out = _convert(SAMPLES / "chord.wav", tmp_path, "sines")
    y = render_vgm(read_vgm(str(out)), rate_hz=None)
    assert np.abs(y).max() < 32767 / 32768


@pytest.mark.parametrize("f_hz", [440.0, 8000.0])
def test_sines_reproduce_pure_tones(tmp_path, f_hz):
    src = _sine(tmp_path, f_hz)
    out = _convert(src, tmp_path, "sines")
    assert check_strict(out.read_bytes()) == []
    assert read_vgm(str(out)).end_time == 2 * 44100
    score = score_vgm(str(src), str(out))
    assert score.distance_db < 1.5, score
    assert abs(score.lag_s) < 0.015


def test_sines_far_better_than_silence_on_speech_and_music(tmp_path):
    for name in ("speech.wav", "melody.wav"):
        ref, _ = sf.read(SAMPLES / name, dtype="float32")
        silent = spectrum.logmel_distance(ref, np.zeros_like(ref)).distance_db
        out = _convert(SAMPLES / name, tmp_path, "sines")
        d = score_vgm(str(SAMPLES / name), str(out)).distance_db
        assert d < 0.4 * silent, (name, d, silent)


def test_voices_are_phase_continuous_no_rekeying_of_a_steady_tone(tmp_path):
    src = _sine(tmp_path, 440.0, seconds=2.0)
    vgm = read_vgm(str(_convert(src, tmp_path, "sines")))
    key_regs = (vgm.regs & 0xF0) == 0xB0
    key_on = (vgm.values & 0x20) != 0
    # at most a couple of key-ons for a steady tone, no key-off/key-on pairs per frame
    assert np.count_nonzero(key_regs & key_on & (vgm.times > 2000)) <= 2


@pytest.mark.skipif(not HAVE_MODEL, reason="no shipped model")
def test_the_model_starts_no_note_at_the_end_of_a_steady_tone(tmp_path):
    # the frames reaching past the input's end once took the spectrum of the part that
    # exists (a short window: a broad peak), and the pursuit keyed a second 440 Hz voice
    # for the last frame (adplay: 3 s at 8 kHz, 1.09 dB against 0.37 for sines)
    src = _sine(tmp_path, 440.0, seconds=2.0)
    vgm = read_vgm(str(_convert(src, tmp_path, "model")))
    key_on = ((vgm.regs & 0xF0) == 0xB0) & ((vgm.values & 0x20) != 0)
    assert np.count_nonzero(key_on & (vgm.times > 2000)) == 0


def test_frames_past_the_end_take_the_last_inside_frames_spectrum():
    from wav2vgm.convert import WINDOW, FrameAnalyser
    t = np.arange(44100) / 44100
    x = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    centres = frame_times(x.size, 60.0)
    analyser = FrameAnalyser(centres, n_samples=x.size)
    inside = analyser.push(x)
    last = analyser.push(None)          # the frames whose windows reach past the end
    assert len(inside) + len(last) == len(centres) and len(last) >= 1
    assert np.all(centres[len(inside):] + WINDOW // 2 > x.size)
    ref = inside[-1]
    top = ref > ref.max() * 1e-2
    for mag in last:
        ratio = mag[top] / ref[top]          # the same shape, at most as loud
        assert ratio.max() <= 1.0 + 1e-6 and np.ptp(ratio) < 1e-4 * ratio.max()


def _held_note(n_frames=3):
    v = VoiceFrames.empty(n_frames, 2)
    v.fnum[:, 0], v.block[:, 0] = (500, 520, 540)[:n_frames], 4     # about 0.6 semitone a frame
    v.amp2[:, 0] = (0.1, 0.4, 0.2)[:n_frames]
    v.fnum[:, 1], v.block[:, 1] = 500, 4
    v.amp2[:, 1] = (0.3, 0.0, 0.3)[:n_frames]                     # stops and starts again
    return v


def test_subdivide_glides_a_held_note_between_frames():
    v = _held_note()
    s = subdivide(v, 4)
    assert s.n_frames == 12
    assert subdivide(v, 1) is v
    a = s.amp2[:, 0]
    # frame 1's updates go from towards frame 0 to towards frame 2, through frame 1's level
    assert a[4] < a[5] < 0.4 and a[6] < 0.4 and a[7] < a[6]
    assert a[4] == pytest.approx(0.1 ** 0.375 * 0.4 ** 0.625, rel=1e-5)       # in dB
    assert a[0] == a[1] == pytest.approx(0.1)         # nothing before frame 0 to glide from
    assert np.all(np.diff(s.fnum[:8, 0].astype(int)) >= 0) and s.fnum[4, 0] < 520 < s.fnum[7, 0]
    # a channel that stops and starts again does not glide: each frame keeps its settings,
    # but a note that ends fades END_FADE_DB over the half hop before its key goes off
    # (updates 2 and 3: a quarter and three quarters of the way)
    faded = v.amp2[0, 1] * 10 ** (-END_FADE_DB * np.array([0.25, 0.75]) / 20)
    assert s.amp2[2:4, 1] == pytest.approx(faded, rel=1e-5)
    assert np.array_equal(s.amp2[[0, 1, 4, 5, 6, 7, 8, 9, 10, 11], 1],
                          np.repeat(v.amp2[:, 1], 4)[[0, 1, 4, 5, 6, 7, 8, 9, 10, 11]])
    assert np.array_equal(s.fnum[:, 1], np.repeat(v.fnum[:, 1], 4))


def test_subdivide_passes_a_pitch_jump_nearer_the_quieter_level():
    # a held channel moves from a loud partial to a quiet one an octave up (no glide)
    v = VoiceFrames.empty(2, 1)
    v.fnum[:, 0], v.block[:, 0] = (500, 500), (4, 5)
    v.amp2[:, 0] = (0.5, 0.005)                                   # 40 dB apart
    through_mean = subdivide(v, 4).amp2[:, 0]
    s = subdivide(v, 4, jump_share=0.35)
    a = s.amp2[:, 0]
    assert np.array_equal(s.fnum[:, 0], np.repeat(v.fnum[:, 0], 4))   # the jump stays put
    assert np.array_equal(s.block[:, 0], np.repeat(v.block[:, 0], 4))
    db = 20 * np.log10(a)
    loud, quiet = 20 * np.log10(0.5), 20 * np.log10(0.005)      # 40 dB apart
    at_jump = quiet + 0.35 * ((loud + quiet) / 2 - quiet)
    # updates 0-1 have no frame before; 2-3 (a quarter and three quarters of the half hop
    # before the jump) ramp down towards it, 4-5 ramp up from it, evenly in dB
    assert a[0] == a[1] == pytest.approx(0.5) and a[6] == a[7] == pytest.approx(0.005)
    assert db[2:6] == pytest.approx([loud + 0.25 * (at_jump - loud), loud + 0.75 * (at_jump - loud),
                                     quiet + 0.75 * (at_jump - quiet),
                                     quiet + 0.25 * (at_jump - quiet)], abs=1e-3)
    # through the mean, the new and quiet partial starts 15 dB louder than it is
    assert 20 * np.log10(through_mean[4]) == pytest.approx(quiet + 0.375 * (loud - quiet), abs=1e-3)
    assert db[4] < 20 * np.log10(through_mean[4]) - 9
    # a note that glides (within 100 cents) is not a jump: the share changes nothing
    g = _held_note()
    assert np.array_equal(subdivide(g, 4, jump_share=0.35).amp2, subdivide(g, 4).amp2)


def test_subdivide_glides_the_pitch_of_a_glide_over_100_cents_a_frame():
    from wav2vgm.opl3 import registers as R
    # channel 0 glides up 300 cents a frame for 4 frames; channel 1 jumps 300 cents once
    cents = np.array([[0, 0], [300, 0], [600, 0], [900, 0], [1200, 300], [1200, 300]], float)
    v = VoiceFrames.empty(6, 2)
    v.fnum[:], v.block[:] = R.hz_to_fnum(220.0 * 2 ** (cents / 1200), mult=1)
    v.amp2[:] = 0.3
    s = subdivide(v, 4)
    hz = R.fnum_to_hz(s.fnum.astype(np.int64), s.block.astype(np.int64))
    glide, jump = 1200 * np.log2(hz[:, 0] / 220.0), 1200 * np.log2(hz[:, 1] / 220.0)
    # from the middle of frame 1 (its steps before and after go up alike) to frame 3 the
    # pitch moves within each frame, between its neighbours; the first step has none before
    assert np.all(np.diff(glide[5:12]) > 10) and glide[4] == pytest.approx(glide[5])
    assert glide[8] == pytest.approx(600 - 0.375 * 300, abs=3)
    # the single jump keeps each frame's pitch up to the frame's edge
    assert np.all(np.abs(jump[:16]) < 2) and np.all(np.abs(jump[16:] - 300) < 2)


def test_subdivide_keeps_a_timbre_change_at_the_frame():
    v = _held_note()
    v.ws2[2, 0] = 1                                   # another waveform from frame 2 on
    s = subdivide(v, 4)
    assert np.array_equal(s.amp2[8:, 0], np.full(4, v.amp2[2, 0]))
    assert s.amp2[7, 0] == pytest.approx(s.amp2[6, 0]) == pytest.approx(0.4)
    assert np.array_equal(s.ws2[:, 0], np.repeat(v.ws2[:, 0], 4))


def test_updates_keep_waits_of_at_least_60_samples():
    assert update_steps(60.0, 4) == 4 and update_steps(300.0, 4) == 2
    assert update_steps(1000.0, 8) == 1 and update_steps(60.0, 1) == 1
    # `best` analyses busy sound at 120 frames/s: 8 updates a frame would be 46 samples apart,
    # more writes than a buffered Nuked core applies (one per 2 native samples)
    assert update_steps(120.0, 8) == 6 and update_steps(90.0, 8) == 8
    for rate in (50.0, 60.0, 90.0, 120.0, 200.0):
        c = np.rint(np.arange(1, 40) * 44100 / rate).astype(np.int64)
        gaps = np.diff(update_times(c, rate, update_steps(rate, 8)))
        assert gaps.min() >= MIN_UPDATE_SAMPLES > MIN_WAIT_SAMPLES
    t = update_times(np.array([0, 735, 1470]), 60.0, 4)
    assert t.tolist() == [0, 0, 0, 184, 368, 551, 735, 919, 1102, 1286, 1470, 1654]   # none before 0


def test_substeps_convert_a_pitch_glide_closer(tmp_path):
    t = np.arange(2 * 44100) / 44100
    f_hz = 330 * 2 ** (t / 8)                          # three semitones in two seconds
    src = tmp_path / "glide.wav"
    sf.write(src, 0.4 * np.sin(2 * np.pi * np.cumsum(f_hz) / 44100), 44100)
    d = {}
    for k in (1, 4):
        out = _convert(src, tmp_path, "sines", substeps=k)
        d[k] = score_vgm(str(src), str(out)).distance_db
        assert check_strict(out.read_bytes()) == []
    assert d[4] < 0.95 * d[1], d


def test_high_frame_rates_with_substeps_stay_playable(tmp_path):
    t = np.arange(44100) / 44100
    src = tmp_path / "sweep.wav"                    # four octaves a second: an F-number per update
    sf.write(src, 0.4 * np.sin(2 * np.pi * np.cumsum(110 * 2 ** (4 * t)) / 44100), 44100)
    out = _convert(src, tmp_path, "sines", frame_rate_hz=300.0, substeps=8)
    vgm = read_vgm(str(out))
    assert check_strict(out.read_bytes()) == []
    gaps = np.diff(np.unique(vgm.times))
    assert gaps.size > 300 and gaps.min() >= 40


@pytest.mark.skipif(not HAVE_MODEL, reason="no trained model in models/")
def test_model_method_converts_and_is_far_better_than_silence(tmp_path):
    src = SAMPLES / "opl_patches.wav"
    out = _convert(src, tmp_path, "model")
    assert check_strict(out.read_bytes()) == []
    ref, _ = sf.read(src, dtype="float32")
    silent = spectrum.logmel_distance(ref, np.zeros_like(ref)).distance_db
    assert score_vgm(str(src), str(out)).distance_db < 0.5 * silent


@pytest.mark.skipif(not HAVE_MODEL, reason="no trained model in models/")
def test_a_mismatched_or_broken_model_is_refused(tmp_path):
    from wav2vgm.errors import ModelError
    from wav2vgm.methods.model import MODEL_SCHEMA, ModelMethod, load_session

    data = default_model_path().read_bytes()
    wrong = tmp_path / "wrong.onnx"
    wrong.write_bytes(data.replace(MODEL_SCHEMA.encode(), MODEL_SCHEMA[:-1].encode() + b"X"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    for path in (wrong, broken, tmp_path / "missing.onnx"):
        load_session.cache_clear()
        with pytest.raises(ModelError):
            ModelMethod(model_path=str(path))


def test_converting_never_imports_torch(tmp_path):
    src = _sine(tmp_path, 440.0, seconds=0.5)
    method = "model" if HAVE_MODEL else "sines"
    # torch may not even be installed: a finder that records (and refuses) any
    # attempt to import it makes the check meaningful either way
    code = ("import sys, importlib.abc\n"
            "tried = []\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            tried.append(name)\n"
            "            raise ImportError('torch is blocked')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from wav2vgm.batch import convert_file\n"
            "from wav2vgm.convert import ConvertOptions\n"
            f"convert_file({str(src)!r}, {str(tmp_path / 'x.vgm')!r}, ConvertOptions(method={method!r}))\n"
            "print('torch' in sys.modules or bool(tried))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_converting_never_imports_scipy_signal(tmp_path):
    """scipy.signal takes about a second to import; wav2vgm.resample stands in for it."""
    src44 = _sine(tmp_path, 440.0, seconds=0.5)
    src48 = tmp_path / "48k.wav"
    sf.write(src48, 0.3 * np.sin(2 * np.pi * 440 * np.arange(24000) / 48000), 48000)
    loaded = {}
    for src in (src44, src48):
        code = ("import sys\n"
                "from wav2vgm.batch import convert_file\n"
                "from wav2vgm.convert import ConvertOptions\n"
                f"convert_file({str(src)!r}, {str(tmp_path / 'x.vgm')!r}, ConvertOptions())\n"
                "print('scipy.signal' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        loaded[src.name] = out.stdout.strip()
    assert loaded == {src44.name: "False", src48.name: "False"}


@pytest.mark.adplay
def test_converted_vgm_plays_in_adplay_with_the_right_length(tmp_path):
    import shutil
    if shutil.which("adplay") is None:
        pytest.skip("adplay not on PATH")
    src = _sine(tmp_path, 440.0, seconds=2.0)
    out = _convert(src, tmp_path, "sines")
    from wav2vgm.quality import adplay_render
    stereo, rate = adplay_render(str(out))
    y = np.rint(stereo * 32768).astype(np.int64)
    sounding = np.flatnonzero(np.abs(y[:, 0]) > 1000)
    assert sounding.size
    assert abs(sounding[0] / rate) < 0.01                      # starts at once
    assert abs((sounding[-1] - sounding[0]) / rate - 2.0) < 0.03
    assert abs(y.shape[0] / rate - 2.0) < 0.03                 # adplay rounds to its 512-sample buffer


def test_frame_rate_follows_the_quality_unless_given():
    assert ConvertOptions().frame_rate_hz is None               # balanced: chosen per input
    assert ConvertOptions(quality="fast").frame_rate_hz == 60.0
    assert ConvertOptions(quality="best").frame_rate_hz is None
    assert ConvertOptions(method="sines", quality="best").frame_rate_hz == 60.0
    assert ConvertOptions(quality="best", frame_rate_hz=50.0).frame_rate_hz == 50.0
    with pytest.raises(ParameterError, match="quality"):
        ConvertOptions(quality="ultra")


def _steps_wav(path, *, note_s, seconds=6.0, rate=44100):
    """A tone that jumps to another random pitch every ``note_s`` seconds (phase-continuous)."""
    rng = np.random.default_rng(5)
    n = int(seconds * rate)
    f = 220.0 * 2 ** (rng.integers(0, 24, int(seconds / note_s) + 1) / 12)
    f_t = f[(np.arange(n) / rate / note_s).astype(int)]
    sf.write(str(path), 0.3 * np.sin(2 * np.pi * np.cumsum(f_t) / rate).astype(np.float32), rate)
    return path


def test_balanced_frame_rate_follows_how_often_the_sound_changes(tmp_path):
    from wav2vgm.audio import open_audio
    from wav2vgm.convert import with_frame_rate
    from wav2vgm.methods.model import AUTO_CHANGES_PER_S, changes_per_second
    busy = _steps_wav(tmp_path / "busy.wav", note_s=0.05)      # 20 notes a second
    calm = _steps_wav(tmp_path / "calm.wav", note_s=0.5)       # 2 notes a second
    chosen = {}
    for src in (busy, calm):
        with open_audio(str(src)) as stream:
            for quality in ("balanced", "best"):
                options = with_frame_rate(ConvertOptions(quality=quality), stream)
                chosen[src.stem, quality] = options.frame_rate_hz
            # an explicit rate, "fast" and the sines method keep theirs
            assert with_frame_rate(ConvertOptions(frame_rate_hz=75.0), stream).frame_rate_hz == 75.0
            assert with_frame_rate(ConvertOptions(quality="fast"), stream).frame_rate_hz == 60.0
            assert with_frame_rate(ConvertOptions(method="sines"), stream).frame_rate_hz == 60.0
    assert chosen == {("busy", "balanced"): 90.0, ("busy", "best"): 120.0,
                      ("calm", "balanced"): 60.0, ("calm", "best"): 60.0}
    # the measure itself: steady mel power is cut every half second at most
    flat = np.ones((600, 80))
    assert changes_per_second(flat, frame_rate_hz=60.0) == pytest.approx(1.9)
    assert changes_per_second(flat[:1], frame_rate_hz=60.0) == 0.0      # a lone frame
    assert AUTO_CHANGES_PER_S > 2.0
    # the conversion plays at the chosen rate and says so in its GD3 notes
    out = convert_file(str(busy), str(tmp_path / "busy.vgm"), ConvertOptions())
    assert out["n_frames"] == len(frame_times(6 * 44100, 90.0))
    assert "90 Hz" in read_vgm(str(tmp_path / "busy.vgm")).gd3.notes


def test_a_long_input_is_probed_beyond_its_intro(tmp_path):
    from wav2vgm.audio import open_audio
    from wav2vgm.convert import probe_windows, with_frame_rate
    rate = 44100
    assert probe_windows(60 * rate) == [(0, 10 * rate)]
    assert probe_windows(5 * rate) == [(0, 5 * rate)]
    windows = probe_windows(100 * rate)
    assert len(windows) == 3 and windows[0][0] == 10 * rate and windows[-1][1] <= 100 * rate
    # a 12 s steady intro, then 58 s of a note every 50 ms: the song is busy
    intro = _steps_wav(tmp_path / "intro.wav", note_s=12.0, seconds=12.0)
    busy = _steps_wav(tmp_path / "busy.wav", note_s=0.05, seconds=58.0)
    x = np.concatenate([sf.read(str(intro), dtype="float32")[0], sf.read(str(busy), dtype="float32")[0]])
    sf.write(str(tmp_path / "song.wav"), x, rate)
    with open_audio(str(tmp_path / "song.wav")) as stream:
        assert with_frame_rate(ConvertOptions(), stream).frame_rate_hz == 90.0
    with open_audio(str(intro)) as stream:
        assert with_frame_rate(ConvertOptions(), stream).frame_rate_hz == 60.0


def test_balanced_frame_rate_is_chosen_on_stdin_too(tmp_path):
    busy = _steps_wav(tmp_path / "busy.wav", note_s=0.05, seconds=2.0)
    r = subprocess.run([sys.executable, "-m", "wav2vgm.cli", "convert", "-", "-o", "-", "-q"],
                       input=busy.read_bytes(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    (tmp_path / "out.vgm").write_bytes(r.stdout)
    v = read_vgm(str(tmp_path / "out.vgm"))
    assert "90 Hz" in v.gd3.notes
    assert abs(v.end_time / 44100 - 2.0) < 0.05


@pytest.mark.parametrize("voices", [18, 6])
def test_notes_end_with_the_soft_release(tmp_path, voices):
    from wav2vgm.methods.base import RELEASE_RATE
    out = _convert(_sine(tmp_path, 440.0, seconds=0.5), tmp_path, "sines", voices=voices)
    v = read_vgm(str(out))
    regs, vals = np.asarray(v.regs), np.asarray(v.values)
    sl_rr = ((regs & 0xFF) >= 0x80) & ((regs & 0xFF) <= 0x95)
    assert sl_rr.any()
    assert set((vals[sl_rr] & 15).tolist()) == {RELEASE_RATE}
    assert RELEASE_RATE < 15


def test_subdivide_glides_the_level_when_a_held_channel_moves_to_another_partial():
    v = _held_note()
    v.fnum[2, 0], v.block[2, 0] = 700, 4             # frame 2: a partial 6 semitones up, key held
    v.mult1[2, 0] = 2                                 # ... with another partner multiplier
    s = subdivide(v, 4)
    a = s.amp2[:, 0]
    assert a[7] < a[6] < 0.4 and a[8] > a[9] > 0.2                # levels glide across the change
    assert a[7] == pytest.approx(0.4 ** 0.625 * 0.2 ** 0.375, rel=1e-5)
    # the pitch and the multiplier jump at the frame: no glide between different partials
    assert s.fnum[6, 0] == s.fnum[7, 0] == 520 and np.all(s.fnum[8:, 0] == 700)
    assert np.array_equal(s.mult1[:, 0], np.repeat(v.mult1[:, 0], 4))


def _one_operator(amp: float):
    """A channel at about 880 Hz whose operator 2 asks for ``amp`` (1 = TL 0), quantised;
    operator 1 at another MULT, so it does not fill in below operator 2's level."""
    from wav2vgm.methods.base import quantise
    v = VoiceFrames.empty(1, 1)
    v.fnum[:], v.block[:] = 580, 5
    v.amp2[:] = amp
    v.mult1[:] = 2
    return quantise(v, gain=FULL_SCALE)


def test_quiet_operators_play_below_tl63_through_key_scaling():
    """An operator 52 dB below TL 0 takes TL 63 at most and key scaling for the rest, and
    the chip plays it that much quieter."""
    from wav2vgm.convert import _pad_channels
    from wav2vgm.opl3 import registers as R
    from wav2vgm.opl3.render import render_events

    def rms_db(frames):
        _, reg, val = R.image_writes(R.channel_images(_pad_channels(frames)))
        x = render_events(np.zeros(reg.size, np.int64), reg, val, end_vgm=22050)[2000:, 0]
        return 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)))

    loud, quiet = _one_operator(1.0), _one_operator(10 ** (-52 / 20))
    assert loud.tl2[0, 0] == 0 and loud.ksl2[0, 0] == 0
    assert quiet.key[0, 0] and quiet.ksl2[0, 0] != 0 and quiet.tl2[0, 0] < 63
    assert abs((rms_db(loud) - rms_db(quiet)) - 52) < 1.0
    # beyond what full key scaling reaches (TL 63 + 26 dB at this pitch) it is silent
    assert not _one_operator(10 ** (-80 / 20)).key[0, 0]


def test_level_fields_do_not_depend_on_memory_layout():
    """Operators only full key scaling brings within range get it whatever the table's
    memory layout: a column-permuted (Fortran-ordered) copy once lost them silently."""
    from wav2vgm.methods.base import level_fields
    from wav2vgm.opl3 import registers as R

    rng = np.random.default_rng(0)
    fnum = rng.integers(300, 1024, (40, 18))
    block = rng.integers(3, 8, (40, 18))
    amp = FULL_SCALE * 10 ** (-rng.uniform(0, 75, (40, 18)) / 20)
    term = R.ksl_term(fnum, block)
    c_order = level_fields(amp, term)
    assert (c_order[1] == 3).any() and c_order[2].any() and (~c_order[2]).any()
    f_order = level_fields(np.asfortranarray(amp), np.asfortranarray(term))
    for a, b in zip(c_order, f_order):
        assert np.array_equal(a, b)


def test_levels_between_tl_steps_come_from_key_scaling():
    """At a pitch whose quarter and half key-scale shares are not whole TL steps, levels
    between TL steps are played through them: each asked level lands within one EG unit
    (0.19 dB; TL alone: two), and the chip plays the difference."""
    from wav2vgm.convert import _pad_channels
    from wav2vgm.opl3 import registers as R
    from wav2vgm.opl3.render import render_events

    term = int(R.ksl_term(580, 5))
    assert term % 16 != 0                       # a quarter share that is not whole TL steps
    # dB below TL 0, in steps of 1/16 dB, below the quarter share (6.4 dB here: TL >= 0 left)
    asked = -np.arange(8.0, 20.0, 0.0625)
    frames = [_one_operator(10 ** (a / 20)) for a in asked]
    played = np.array([-(f.tl2[0, 0] * 4 + int(R.ksl_attenuation(term, f.ksl2[0, 0]))) for f in frames])
    err = np.abs(played * R.TL_STEP_DB / 4 - asked)
    assert err.max() <= R.TL_STEP_DB / 4 + 1e-9
    assert any(f.ksl2[0, 0] != 0 for f in frames)     # some levels use key scaling
    tl_only = np.abs(np.rint(-asked / R.TL_STEP_DB) * -R.TL_STEP_DB - asked)
    assert err.mean() < 0.7 * tl_only.mean()

    def rms_db(f):
        _, reg, val = R.image_writes(R.channel_images(_pad_channels(f)))
        x = render_events(np.zeros(reg.size, np.int64), reg, val, end_vgm=22050)[2000:, 0]
        return 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)))

    # two levels less than a TL step apart play that far apart on the chip
    i = next(k for k, f in enumerate(frames) if f.ksl2[0, 0] != 0)
    j = next(k for k in range(len(frames)) if frames[k].ksl2[0, 0] == 0 and played[k] != played[i]
             and abs(played[k] - played[i]) < 4)
    step_db = (played[i] - played[j]) * R.TL_STEP_DB / 4
    assert abs((rms_db(frames[i]) - rms_db(frames[j])) - step_db) < 0.1


def test_onset_gains_quieten_only_the_updates_before_an_onset():
    """Frames whose window already hears a note that starts later play quieter in the
    updates before it and louder in its attack; steady sound, silence and unknown
    stretches keep their level."""
    from wav2vgm.methods.base import ONSET_FLOOR_DB, onset_gains
    steps = 4
    frame = np.array([1e-8, 1e-8, 0.1, 1.0, 1.0, 1.0])       # a note starts in frame 2's window
    around = np.repeat(frame[:, None], steps, axis=1)
    around[2] = [1e-8, 1e-8, 1e-8, 0.9]                    # ... after three of its four updates
    played = np.ones((frame.size, steps))
    g = onset_gains(np.concatenate([frame[:, None], around], axis=1), played, loudest=1.0)
    assert np.all(g[2, :3] < 10 ** (-6 / 20)) and np.all(g[2, :3] >= 10 ** (-ONSET_FLOOR_DB / 20))
    assert g[2, 3] == 1.0 and np.all(g[3:] == 1.0)        # the onset itself and the note after
    around[3, 0] = 4.0                                      # an attack louder than its frame
    energy = np.concatenate([frame[:, None], around], axis=1)
    g2 = onset_gains(energy, played, loudest=4.0, attack_updates=2)
    assert g2[3, 0] == pytest.approx(2.0) and np.all(g2[4:] == 1.0)     # right after the drops
    # but never above the loudest frame, which the loudness gain fitted to the chip
    assert onset_gains(energy, played, loudest=2.0, attack_updates=2)[3, 0] == pytest.approx(2 ** 0.5)
    around[5, 0] = 4.0                                      # louder, but no drop before it
    g2 = onset_gains(np.concatenate([frame[:, None], around], axis=1), played, loudest=4.0,
                     attack_updates=2)
    assert g2[5, 0] == 1.0
    around[3, 0] = around[5, 0] = 1.0
    assert np.all(g[:2] == 1.0)                              # silence: nothing to quieten
    around[2, 0] = np.nan                                    # outside the input
    played[2, 1] = 1e-7                                      # an update that plays that little
    g = onset_gains(np.concatenate([frame[:, None], around], axis=1), played, loudest=1.0)
    assert g[2, 0] == 1.0 and g[2, 1] == 1.0 and g[2, 2] < 1.0


def test_a_sudden_note_is_not_heard_before_it_starts(tmp_path):
    """A tone that starts between frame centres: the conversion plays less of it before its
    start than the same voices written without the onset gains."""
    from wav2vgm.audio import open_audio
    from wav2vgm.convert import analyse, write_voices
    from wav2vgm.opl3.render import render_vgm
    from wav2vgm.vgm import VgmWriter

    rate = 44100
    start = int(0.5 * rate + 300)                            # 300 samples after a frame centre
    x = np.zeros(rate, np.float32)
    t = np.arange(rate - start) / rate
    x[start:] = 0.5 * np.sin(2 * np.pi * 440 * t)
    src = tmp_path / "burst.wav"
    sf.write(src, x, rate)
    options = ConvertOptions(method="sines", frame_rate_hz=60.0)
    with open_audio(str(src)) as stream:
        found = analyse(stream, options)
        n = stream.n_samples
    assert found.update_energy is not None

    def before_onset_db(energy):
        found.update_energy = energy
        out = tmp_path / f"o{energy is None}.vgm"
        with open(out, "wb") as f:
            w = VgmWriter(f)
            write_voices(w, found, options, n_samples=n)
            w.close()
        y = render_vgm(read_vgm(str(out)), rate_hz=rate).mean(axis=1)
        # 15 to 6 ms before the note (the input's power is read through a 23 ms window, so
        # the last few ms before an onset keep their level)
        pre = y[start - int(0.015 * rate):start - int(0.006 * rate)]
        note = y[start + 2000:start + 6000]
        return 10 * np.log10(np.mean(pre ** 2) / np.mean(note ** 2))

    with_gains = before_onset_db(found.update_energy.copy())
    without = before_onset_db(None)
    assert with_gains < without - 5.0          # about 6.6 dB here, with the bands' power matched


def test_register_events_do_not_depend_on_the_chunk_size(tmp_path):
    """Chunks see their neighbours (subdivide's frames either side, the drops an attack
    looks back to), so any chunk size writes the same events."""
    from wav2vgm.audio import open_audio
    from wav2vgm.convert import analyse, register_events

    src = Path(__file__).resolve().parents[1] / "samples" / "speech.wav"
    options = ConvertOptions(method="sines", frame_rate_hz=90.0)
    with open_audio(str(src)) as stream:
        found = analyse(stream, options)
    ref = (found.level_power, found.level_stride)

    def events(chunk):
        parts = list(register_events(found.voices, found.centres, options, chunk=chunk,
                                     reference=ref, update_energy=found.update_energy))
        return [np.concatenate([p[k] for p in parts]) for k in range(3)]

    whole, small = events(1 << 20), events(30)       # 5 frames a chunk at 6 updates a frame
    assert all(np.array_equal(x, y) for x, y in zip(whole, small))


def _state_after(regs, values, start=None) -> np.ndarray:
    """The 512-byte register image after applying writes to ``start`` (default: a reset chip)."""
    img = np.zeros(512, np.uint8) if start is None else start.copy()
    for r, v in zip(regs.tolist(), values.tolist()):
        img[r] = v
    return img


@pytest.mark.parametrize("method", ["sines", "model"])
def test_loop_point_restores_the_opening_state(tmp_path, method):
    """With --loop, whatever the end of the song left, replaying the data from the loop
    point sets the chip exactly as the first pass did; without it, it does not."""
    if method == "model" and not HAVE_MODEL:
        pytest.skip("no trained model")
    # one tone for 12 s, then a chord: its channels are first keyed after the writer's first
    # chunk of updates, so without --loop the opening writes never touch them
    t = np.arange(13 * 44100) / 44100
    x = 0.3 * np.sin(2 * np.pi * 220 * t)
    for f_hz in (277.2, 329.6, 440.0, 554.4):
        x += np.where(t >= 12, 0.2 * np.sin(2 * np.pi * f_hz * t), 0.0)
    src = tmp_path / "late_chord.wav"
    sf.write(src, x / np.abs(x).max() * 0.5, 44100)
    states = {}
    for loop in (True, False):
        out = tmp_path / f"{loop}.vgm"
        convert_file(str(src), str(out), ConvertOptions(method=method, loop_start_s=0.0 if loop else None))
        data = out.read_bytes()
        assert check_strict(data) == []
        vgm = read_vgm(str(out))
        first = vgm.times == vgm.times[0]                 # the opening group of writes
        opening = _state_after(vgm.regs[first], vgm.values[first])
        end = _state_after(vgm.regs, vgm.values)
        replayed = _state_after(vgm.regs[first], vgm.values[first], start=end)
        states[loop] = (vgm, opening, replayed)
    vgm, opening, replayed = states[True]
    assert vgm.loop_offset == 0x100 and vgm.loop_samples == vgm.total_samples > 0
    assert np.array_equal(opening, replayed)
    plain, opening, replayed = states[False]
    assert plain.loop_offset == 0 and not np.array_equal(opening, replayed)
    # the looped file opens by setting every register the converter uses: 4 globals and,
    # for each of the 18 channels, 2 operators x 5 registers + C0, A0, B0
    assert (vgm.times == vgm.times[0]).sum() == 4 + 18 * 13
    assert (plain.times == plain.times[0]).sum() < 4 + 18 * 13


@pytest.mark.adplay
def test_looped_file_plays_once_in_adplay_and_sounds_like_the_plain_one(tmp_path):
    import shutil
    if shutil.which("adplay") is None:
        pytest.skip("adplay not on PATH")
    from wav2vgm.quality import adplay_render
    src = SAMPLES / "chord.wav"
    lengths, dist = {}, {}
    for loop in (False, True):
        out = tmp_path / f"{loop}.vgm"
        convert_file(str(src), str(out), ConvertOptions(method="sines", loop_start_s=0.0 if loop else None))
        lengths[loop] = adplay_render(str(out))[0].shape[0]
        dist[loop] = score_vgm(str(src), str(out), player="adplay").distance_db
    assert lengths[True] == lengths[False]                      # the disk writer plays once
    assert abs(dist[True] - dist[False]) < 0.1


def test_loop_start_replays_from_its_update_with_the_state_the_first_pass_had(tmp_path):
    """--loop-start: an intro plays once; the loop's first update sets every register, so
    replaying it over the final state gives the state the first pass had there."""
    t = np.arange(6 * 44100) / 44100
    x = 0.3 * np.sin(2 * np.pi * 220 * t)
    for f_hz in (277.2, 329.6):
        x += np.where(t >= 4, 0.2 * np.sin(2 * np.pi * f_hz * t), 0.0)
    src = tmp_path / "intro.wav"
    sf.write(src, x / np.abs(x).max() * 0.5, 44100)
    out = tmp_path / "l.vgm"
    convert_file(str(src), str(out), ConvertOptions(method="sines", loop_start_s=2.5))
    assert check_strict(out.read_bytes()) == []
    vgm = read_vgm(str(out))
    start = vgm.total_samples - vgm.loop_samples               # the loop point's time
    assert vgm.loop_offset > 0x100 and abs(start - 2.5 * 44100) <= 150
    group = vgm.times == vgm.times[vgm.times >= start].min()   # the loop's first writes
    assert group.sum() == 4 + 18 * 13
    first_pass = _state_after(vgm.regs[vgm.times <= vgm.times[group][0]],
                              vgm.values[vgm.times <= vgm.times[group][0]])
    end = _state_after(vgm.regs, vgm.values)
    replayed = _state_after(vgm.regs[group], vgm.values[group], start=end)
    assert np.array_equal(first_pass, replayed)
    # played twice by the emulator, the second pass goes on as the first did from the loop
    # point: the tone at its level, the chord ringing at the end keyed off (its partials
    # 30-60 dB down again within 0.1 s)
    from wav2vgm.opl3.render import render_vgm
    twice = render_vgm(vgm, loops=2).mean(axis=1)
    assert abs(twice.shape[0] - (vgm.end_time + vgm.loop_samples)) < 600

    def level_db(at, f_hz, n=4096):
        spec = np.abs(np.fft.rfft(twice[at:at + n] * np.hanning(n)))
        k = int(round(f_hz * n / 44100))
        return 20 * np.log10(spec[k - 2:k + 3].max() + 1e-9)
    for off_s in (0.1, 0.4, 0.8):
        o = int(off_s * 44100)
        for f_hz in (220.0, 277.2, 329.6):
            assert abs(level_db(start + o, f_hz) - level_db(vgm.end_time + o, f_hz)) < 1.0
    end_chord = level_db(vgm.end_time - 8192, 277.2)
    assert end_chord - level_db(vgm.end_time + 4410, 277.2) > 20
    # it sounds like the plain conversion (the writes differ only in how registers are set)
    plain = tmp_path / "p.vgm"
    convert_file(str(src), str(plain), ConvertOptions(method="sines"))
    p = read_vgm(str(plain))
    assert p.loop_offset == 0
    assert abs(score_vgm(str(src), str(out)).distance_db - score_vgm(str(src), str(plain)).distance_db) < 0.1


def test_loop_start_must_lie_inside_the_conversion(tmp_path):
    src = _sine(tmp_path, 440.0, seconds=1.0)
    with pytest.raises(ParameterError, match="loop start 5 s"):
        convert_file(str(src), str(tmp_path / "x.vgm"), ConvertOptions(method="sines", loop_start_s=5.0))
    assert not (tmp_path / "x.vgm").exists()
    with pytest.raises(ParameterError, match="loop start"):
        ConvertOptions(loop_start_s=-1.0)


@pytest.mark.parametrize("method", ["sines", "model"])
def test_a_dc_offset_is_not_played(tmp_path, method):
    """A constant offset (recordings of OPL chips carry large ones) adds no partial: frames
    lose their DC before the spectrum, so its side lobes (the first at 54 Hz, 31 dB down)
    are not taken for partials.  The offset fades in and out over a second (a step would
    be a click in the reference); the slow fades are low-frequency sound and may be
    played, the steady second between them holds only the tone's partials."""
    from wav2vgm.audio import open_audio
    from wav2vgm.convert import analyse
    from wav2vgm.opl3 import registers as R
    if method == "model" and not HAVE_MODEL:
        pytest.skip("no shipped model")
    t = np.arange(3 * 44100) / 44100
    tone = 0.3 * np.sin(2 * np.pi * 330.0 * t) + 0.1 * np.sin(2 * np.pi * 990.0 * t)
    ramp = np.minimum(1.0, np.minimum(t, t[-1] - t))
    scores = {}
    for name, x in (("plain", tone), ("offset", tone + 0.45 * np.sin(np.pi / 2 * ramp) ** 2)):
        src = tmp_path / f"{name}.wav"
        sf.write(src, x, 44100)
        with open_audio(str(src)) as stream:
            found = analyse(stream, ConvertOptions(method=method))
        v = found.voices.rows(np.flatnonzero(np.abs(found.centres / 44100 - 1.5) < 0.4))
        base_hz = v.fnum * 2.0 ** v.block.astype(float) * R.NATIVE_RATE_HZ / 2 ** 20
        mult = np.array(R.MULT_FACTORS)
        partials = np.concatenate([(base_hz * mult[v.mult1])[v.amp1 > 0],
                                   (base_hz * mult[v.mult2])[v.amp2 > 0]])
        assert partials.size and partials.min() > 250.0, (name, np.sort(partials)[:5])
        scores[name] = score_vgm(str(src), str(_convert(src, tmp_path, method))).distance_db
    # measured: sines 0.89 / 1.15 dB; 4.12 with the offset when frames kept their DC
    assert scores["offset"] < scores["plain"] + 0.5, scores


@pytest.mark.parametrize("method", ["sines", "model"])
def test_conversion_does_not_depend_on_the_input_level(tmp_path, method):
    """The analysis hears every input with its peak at full scale: the same music 40 dB
    quieter gives the same voices (its partials were cut by the peak picker's floor)."""
    if method == "model" and not HAVE_MODEL:
        pytest.skip("no shipped model")
    x, rate = sf.read(SAMPLES / "speech.wav", dtype="float32")
    x = x[:2 * rate]
    scores = []
    for gain_db in (0.0, -40.0):
        src = tmp_path / f"speech{int(gain_db)}.wav"
        sf.write(src, x * np.float32(10 ** (gain_db / 20)), rate, subtype="FLOAT")
        scores.append(score_vgm(str(src), str(_convert(src, tmp_path, method))).distance_db)
    assert abs(scores[1] - scores[0]) < 0.05, scores


def test_the_analysis_gain_brings_the_peak_to_full_scale(tmp_path):
    from wav2vgm.audio import open_audio
    from wav2vgm.convert import ANALYSIS_PEAK, MAX_ANALYSIS_BOOST_DB, analysis_gain
    t = np.arange(44100) / 44100
    cases = ((0.25, ANALYSIS_PEAK / 0.25), (1e-6, 10 ** (MAX_ANALYSIS_BOOST_DB / 20)), (0.0, 1.0))
    for peak, gain in cases:
        src = tmp_path / "x.wav"
        left = peak * np.sin(2 * np.pi * 440 * t)
        sf.write(src, np.column_stack([0.5 * left, left]), 44100, subtype="FLOAT")
        with open_audio(str(src)) as stream:
            assert stream.peak() == pytest.approx(peak, rel=1e-6, abs=1e-12)
            assert analysis_gain(stream) == pytest.approx(gain, rel=1e-5)


def test_operator_1_is_in_phase_from_a_key_on_until_it_takes_another_multiplier():
    from wav2vgm.methods.base import in_phase
    from wav2vgm.opl3 import registers as R
    key = np.array([[0], [1], [1], [1], [0], [1], [1]], bool)
    mult1 = np.array([[1], [1], [1], [3], [3], [1], [1]])      # a partner at frame 3
    mult2 = np.ones_like(mult1)
    got = in_phase(key, mult1, mult2)[:, 0].tolist()
    assert got == [True, True, True, False, False, True, True]     # the key-on at 5 resets
    # carried over from the chunk before: no key-on here, so its last state holds ...
    before = R.ChannelFrames.silent(1, 1)
    before.key[:] = True
    before.in_phase = np.array([[False]])
    assert not in_phase(key[1:4], mult2[1:4], mult2[1:4], previous=before)[:, 0].any()
    # ... until a key-on (the chunk starting unkeyed)
    assert in_phase(key[4:], mult2[4:], mult2[4:], previous=before)[1:, 0].all()


def test_a_free_in_phase_operator_1_fills_in_below_operator_2s_tl_step():
    from wav2vgm.methods.base import _EG_FULL_SCALE, _EG_PER_DECADE, quantise
    from wav2vgm.opl3 import registers as R
    v = VoiceFrames.empty(4, 2)
    v.fnum[:], v.block[:] = R.hz_to_fnum(np.full((4, 2), 440.0), mult=1)
    v.amp2[:] = 0.2 * 10 ** (-np.arange(4) * 0.2 / 20)[:, None]   # 0.2 dB steps down
    v.amp1[:, 1], v.mult1[:, 1] = 0.01, 3                          # channel 1 has a partner
    f = quantise(v, gain=FULL_SCALE)
    term = R.ksl_term(f.fnum, f.block)
    played = lambda tl, ksl: np.where(  # noqa: E731
        tl < 63, 10 ** ((_EG_FULL_SCALE - tl * 4 - R.ksl_attenuation(term, ksl)) / _EG_PER_DECADE), 0.0)
    total = played(f.tl2, f.ksl2) + played(f.tl1, f.ksl1)
    err_db = 20 * np.log10(total[:, 0] / (v.amp2[:, 0] * FULL_SCALE))
    assert np.abs(err_db).max() < 0.1, err_db                     # TL steps alone: up to 0.375
    assert (f.tl1[:, 0] < 63).any()
    assert f.mult1[0, 1] == 3 and not f.in_phase[:, 1].any()        # the partner keeps its level


def test_a_decaying_tone_glides_without_a_tl_staircase(tmp_path):
    # operator 1 fills in below operator 2's TL steps: emulator 1.51 dB before, 0.33 now
    t = np.arange(2 * 44100) / 44100
    src = tmp_path / "decay.wav"
    sf.write(src, 0.5 * np.sin(2 * np.pi * 440 * t) * np.exp(-2 * t), 44100)
    out = _convert(src, tmp_path, "sines")
    assert score_vgm(str(src), str(out)).distance_db < 0.7


def test_an_onset_raise_stops_at_tl0_unless_the_level_was_above_it():
    from wav2vgm.convert import _boosted
    amp = np.array([[0.2, 0.9, 1.5]], np.float32)
    up, down = np.array([[2.0]]), np.array([[0.5]])
    assert np.allclose(_boosted(amp, up, 1.0), [[0.4, 1.0, 1.5]])     # to TL 0; not past
    assert np.allclose(_boosted(amp, down, 1.0), amp * 0.5)           # drops as asked


@pytest.mark.skipif(not HAVE_MODEL, reason="no shipped model")
@pytest.mark.parametrize("voices", [1, 2, 3])
def test_the_model_converts_with_as_few_voices_as_asked(tmp_path, voices):
    # 2 or fewer leave the sine tracker no channel at all (it once failed on that)
    src = _sine(tmp_path, 440.0, seconds=1.0)
    out = _convert(src, tmp_path, "model", voices=voices)
    vgm = read_vgm(str(out))
    channels = {int(r) & 0x10F for r, v in zip(vgm.regs, vgm.values)
                if (int(r) & 0xF0) == 0xB0 and int(v) & 0x20}
    assert 1 <= len(channels) <= voices
    assert score_vgm(str(src), str(out)).distance_db < 3.0
