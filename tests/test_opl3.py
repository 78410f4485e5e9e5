"""Register map, frequency math, emulator blocks and the batch voice renderer."""

from __future__ import annotations

import numpy as np
import pytest

from wav2vgm.errors import ParameterError
from wav2vgm.opl3 import registers as R
from wav2vgm.opl3.emulator import Chip, render_writes
from wav2vgm.opl3.render import player_write_times
from wav2vgm.opl3.voices import VoiceBatch, render_voices


def test_slot_map_matches_nuked():
    assert R.channel_slots(0) == (0, 3)
    assert R.channel_slots(3) == (6, 9)
    assert R.channel_slots(8) == (14, 17)
    assert R.channel_slots(9) == (18, 21)
    assert sorted(R.CHANNEL_SLOTS.ravel().tolist()) == list(range(36))
    assert R.operator_register(R.OP_KSL_TL, 10, 1) == 0x100 + 0x40 + 0x04


@pytest.mark.parametrize("f_hz", [27.5, 110.0, 440.0, 1000.0, 3000.0, 6000.0])
def test_frequency_round_trip_below_6k(f_hz):
    fnum, block = R.hz_to_fnum(f_hz)
    assert 0 <= fnum <= 1023 and 1 <= block <= 7
    assert abs(R.fnum_to_hz(fnum, block) / f_hz - 1) < 0.002


@pytest.mark.parametrize("f_hz", [7000.0, 8000.0, 12000.0, 16000.0, 20000.0])
def test_multipliers_reach_high_partials(f_hz):
    fnum, block, mult = R.best_frequency_setting(f_hz)
    assert mult > 1
    assert abs(R.fnum_to_hz(fnum, block, mult) / f_hz - 1) < 0.003


def test_tl_math():
    assert R.db_to_tl(0) == 0
    assert R.db_to_tl(7.5) == 10
    assert R.db_to_tl(100) == 63
    assert abs(R.tl_to_db(8) - 6.02) < 0.01


def test_operator_field_checks():
    with pytest.raises(ParameterError, match="tl must be 0-63, got 64"):
        R.Operator(tl=64)


def test_register_frame_writes_are_minimal_and_ordered():
    a = R.RegisterFrame()
    a.set_opl3_mode()
    a.set_operator(0, 1, R.Operator(tl=0))
    a.set_channel(0, fnum=580, block=4, key=True, cnt=1)
    w = a.writes_from(None)
    regs = [r for r, _ in w]
    assert regs[0] == R.REG_NEW
    assert regs[-1] == 0xB0                # key-on last
    assert regs.index(0xA0) < regs.index(0xB0)
    b = a.copy()
    b[0x43] = 5                            # TL change only
    assert b.writes_from(a) == [(0x43, 5)]
    c = a.copy()
    c.set_key(0, False)
    assert c.writes_from(a) == [(0xB0, a[0xB0] & 0x1F)]


def test_channel_images_and_vectorised_writes_agree_with_register_frames():
    f = R.ChannelFrames.silent(3)
    f.key[1, 2] = True
    f.fnum[1:, 2] = 300
    f.block[1:, 2] = 3
    f.tl2[1, 2] = 10
    imgs = R.channel_images(f)
    frame, reg, val = R.image_writes(imgs)
    for i in range(3):
        before = imgs[i - 1] if i else np.zeros(512, np.uint8)
        # brute force: every register whose value differs, with its new value
        expect = [(r, int(imgs[i][r])) for r in range(512) if imgs[i][r] != before[r]]
        got = [(int(r), int(v)) for fr, r, v in zip(frame, reg, val) if fr == i]
        assert sorted(got) == sorted(expect)
        assert R.RegisterFrame(bytes(imgs[i])).writes_from(
            R.RegisterFrame(bytes(before)) if i else None) == got
        # globals, key-offs, then channel by channel operators/C0, A0, B0
        key_off = lambda r, v: (r & 0xF0) == 0xB0 and before[r] & 0x20 and not v & 0x20  # noqa: E731
        ranks = [7 if key_off(r, v) else R._write_rank(r) for r, v in got]
        keys = [(0, k, 0) if k < 10 else (1, int(R.REGISTER_CHANNEL[r]), k)
                for k, (r, _) in zip(ranks, got)]
        assert keys == sorted(keys)
    assert any((r & 0xF0) == 0xB0 and not v & 0x20 and fr == 2          # the key-off is there
               for fr, r, v in zip(frame, reg, val))


def _random_frames(rng, n_frames: int, *, p_key: float) -> R.ChannelFrames:
    """18 channels of random keys, pitches, carrier levels and waveforms."""
    f = R.ChannelFrames.silent(n_frames)
    f.key[:] = rng.random(f.key.shape) < p_key
    f.fnum[:] = rng.integers(0, 1024, f.fnum.shape)
    f.block[:] = rng.integers(0, 8, f.block.shape)
    f.tl2[:] = rng.integers(0, 64, f.tl2.shape)
    f.ws1[:] = rng.integers(0, 8, f.ws1.shape)
    return f


def test_image_writes_reads_both_image_layouts_alike():
    """channel_images returns a transposed (register-major) view, which image_writes
    diffs as is; a row-major copy of the same images, with any previous image and a
    frame count that is no multiple of 8, gives the very same writes."""
    rng = np.random.default_rng(5)
    f = _random_frames(rng, 13, p_key=0.6)
    imgs = R.channel_images(f, lazy=True)
    assert imgs.shape == (13, 512) and not imgs.flags.c_contiguous
    prev = rng.integers(0, 256, 512).astype(np.uint8)
    for previous in (None, prev):
        a = R.image_writes(imgs, previous=previous)
        b = R.image_writes(np.ascontiguousarray(imgs), previous=previous)
        assert len(a[0]) > 50
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_unknown_state_makes_image_writes_set_every_register_and_keep_keys():
    """From unknown_state(image), image_writes writes all 238 registers the converter
    uses (4 globals, 18 channels x 13), whatever the chip held; applied over any state
    they give ``image`` on those registers; a keyed channel gets no early key-off."""
    rng = np.random.default_rng(9)
    f = _random_frames(rng, 1, p_key=0.5)
    image = np.ascontiguousarray(R.channel_images(f))[0]
    frame, reg, val = R.image_writes(image[None], previous=R.unknown_state(image))
    assert reg.size == np.unique(reg).size == 4 + 18 * 13
    chip = rng.integers(0, 256, 512).astype(np.uint8)      # whatever the end of a song left
    chip[reg] = val
    assert np.array_equal(chip[reg], image[reg])
    b0 = [R.channel_register(R.CH_KEY_BLOCK_FNUM_HI, c) for c in range(18)]
    assert sorted(r for r in reg.tolist() if r in b0) == sorted(b0)   # one B0 write each


def test_a_channels_writes_are_adjacent_with_its_key_on_last():
    """A busy frame: each channel's MULT, A0 and B0 follow one another (players space
    writes about 2 samples apart, so a gap between them plays a wrong frequency)."""
    f = R.ChannelFrames.silent(2)
    f.key[:] = True
    f.fnum[:] = 600
    f.block[:] = 4
    f.tl2[:] = 20
    f.mult2[1] = 2                         # frame 1: every channel's MULT2 and F-number change
    f.fnum[1] = 300
    f.fnum[1, 0] = 250                     # channel 0 crosses a high-bits boundary as well
    f.block[1, 0] = 5
    imgs = R.channel_images(f)
    frame, reg, val = R.image_writes(imgs)
    regs = reg[frame == 1].tolist()
    channels = [int(R.REGISTER_CHANNEL[r]) for r in regs]
    assert channels == sorted(channels)                          # channel by channel
    for c in range(R.N_CHANNELS):
        mine = [r for r, ch in zip(regs, channels) if ch == c]
        assert regs.index(mine[-1]) - regs.index(mine[0]) == len(mine) - 1      # adjacent
        assert R.OP_AM_VIB_EGT_KSR_MULT + R._OP2_OFFSETS[c] in mine             # its MULT2
        assert (mine[-2] & 0xF0, mine[-1] & 0xF0) == (0xA0, 0xB0)               # then A0, B0


def _tone_writes(ws=0, fb=0, cnt=1, mod_tl=63):
    w = [(0x105, 1), (0x20, 0x21), (0x40, mod_tl), (0x60, 0xF0 if mod_tl < 63 else 0x00),
         (0x80, 0x0F), (0xE0, ws), (0x23, 0x21), (0x43, 0x00), (0x63, 0xF0), (0x83, 0x0F),
         (0xE3, ws), (0xC0, R.c0_value(fb, cnt)), (0xA0, 580 & 0xFF), (0xB0, R.b0_value(580, 4, True))]
    return w


def test_chip_sine_peak_and_pitch():
    chip = Chip()
    for r, v in _tone_writes():
        chip.write(r, v)
    y = chip.generate(49716)
    assert y[:, 0].max() == 4084 and y[:, 0].min() in (-4085, -4086)
    spec = np.abs(np.fft.rfft(y[:, 0].astype(float)))
    assert abs(np.argmax(spec) * 49716 / y.shape[0] - R.fnum_to_hz(580, 4)) < 1.0


def test_key_on_sounds_one_sample_after_the_write_on_channel_0():
    chip = Chip()
    for r, v in _tone_writes():
        chip.write(r, v)
    y = chip.generate(8)
    assert y[0, 0] == 0 and y[1, 0] != 0        # EG lags one sample (OPL3.md section 11)
    assert y[1, 1] == 0 and y[2, 1] != 0        # output B one sample later


def test_right_output_lags_a_sample_for_the_slots_mixed_before_the_left():
    """Nuked mixes the left output after updating slots 0-14 and the right after slots
    0-32: an operator in slots 0-14 or 33-35 reaches the right a sample after the left,
    the others both at once (what `benchmarks/run.py sides` measures in the mono mix)."""
    for channel in range(R.N_CHANNELS):
        for op in (0, 1):
            chip = Chip()
            chip.write(0x105, 1)
            for o in (0, 1):
                for base, value in ((0x20, 0x21), (0x40, 0 if o == op else 63), (0x60, 0xF0),
                                    (0x80, 0x0F), (0xE0, 0)):
                    chip.write(R.operator_register(base, channel, o), value)
            chip.write(R.channel_register(0xC0, channel), R.c0_value(0, 1))
            chip.write(R.channel_register(0xA0, channel), 580 & 0xFF)
            chip.write(R.channel_register(0xB0, channel), R.b0_value(580, 4, True))
            y = chip.generate(400).astype(np.int64)
            left, right = y[100:, 0], y[100:, 1]
            slot = R.CHANNEL_SLOTS[channel][op]
            same = np.abs(right - left).max()
            lagged = np.abs(right[1:] - left[:-1]).max()        # (the sides round apart by 1)
            if 15 <= slot <= 32:
                assert same <= 1 and lagged > 100
            else:
                assert lagged <= 1 and same > 100


def test_output_bits_route_left_and_right():
    chip = Chip()
    for r, v in _tone_writes():
        chip.write(r, v)
    chip.write(0xC0, R.c0_value(0, 1, R.OUT_LEFT))
    y = chip.generate(2000)
    assert np.abs(y[:, 0]).max() > 4000 and np.abs(y[:, 1]).max() <= 1


def test_release_silences_the_voice():
    chip = Chip()
    for r, v in _tone_writes():
        chip.write(r, v)
    chip.generate(1000)
    chip.write(0xB0, R.b0_value(580, 4, False))
    y = chip.generate(4000)
    assert np.abs(y[-500:, 0]).max() <= 2     # two idle operators output -1 each


def test_eighteen_full_channels_clip_not_wrap():
    chip = Chip()
    chip.write(0x105, 1)
    for ch in range(18):
        for op in (0, 1):
            for base, v in zip(R.OPERATOR_BASES, R.Operator(tl=0).register_bytes()):
                chip.write(R.operator_register(base, ch, op), v)
        chip.write(R.channel_register(0xC0, ch), R.c0_value(0, 1))
        chip.write(R.channel_register(0xA0, ch), 0)
        chip.write(R.channel_register(0xB0, ch), R.b0_value(512, 1, True))
    y = chip.generate(6000)
    assert y.max() == 32767 and y.min() == -32768


def test_render_writes_applies_buffered_spacing():
    w = _tone_writes()
    times = np.zeros(len(w), int)
    regs = [r for r, _ in w]
    vals = [v for _, v in w]
    a = render_writes(times, regs, vals, n_samples=200, write_spacing=0)
    b = render_writes(times, regs, vals, n_samples=200, write_spacing=2)
    start = lambda y: int(np.flatnonzero(y[:, 0])[0])  # noqa: E731
    assert start(b) - start(a) == 2 * (len(w) - 1) + 1


def test_player_timing_exact_and_adplay():
    t, n = player_write_times([0, 735, 1470], 2205, timing="exact")
    assert t.tolist() == [0, 829, 1657] and n == 2486
    t, n = player_write_times([0, 735, 1470], 2205, timing="adplay")
    assert t[0] == 4                              # adplay renders 4 samples before the first update
    assert abs(t[2] - t[1] - 829) <= 4
    with pytest.raises(ParameterError):
        player_write_times([0], 10, timing="nope")


@pytest.mark.parametrize("n_ops,algs", [(2, (0, 1)), (4, (0, 1, 2, 3))])
def test_batch_voices_equal_the_chip(n_ops, algs):
    rng = np.random.default_rng(7)
    for alg in algs:
        fnum, block, fb = int(rng.integers(300, 1000)), int(rng.integers(2, 6)), 3
        mult = rng.integers(1, 8, n_ops)
        tl = rng.integers(0, 30, n_ops)
        ws = rng.integers(0, 8, n_ops)
        vb = VoiceBatch(np.array([fnum]), np.array([block]), np.array([fb]), np.array([alg]),
                        mult[None], tl[None], ws[None])
        y = render_voices(vb, n_samples=3000)[0]
        chip = Chip()
        chip.write(0x105, 1)
        if n_ops == 4:
            chip.write(0x104, 0b10)
        for j, (ch, op) in enumerate([(1, 0), (1, 1), (4, 0), (4, 1)][:n_ops]):
            o = R.Operator(mult=int(mult[j]), tl=int(tl[j]), ws=int(ws[j]))
            for base, v in zip(R.OPERATOR_BASES, o.register_bytes()):
                chip.write(R.operator_register(base, ch, op), v)
        if n_ops == 2:
            chip.write(0xC1, R.c0_value(fb, alg, R.OUT_LEFT))
        else:
            chip.write(0xC1, R.c0_value(fb, alg >> 1, R.OUT_LEFT))
            chip.write(0xC4, R.c0_value(0, alg & 1, R.OUT_LEFT))
        chip.write(0xA1, fnum & 0xFF)
        chip.write(0xB1, R.b0_value(fnum, block, True))
        z = chip.generate(3001)[:, 0].astype(int)
        assert np.abs(z[200:3000] - y[200:3000]).max() == 0   # steady state, f"{n_ops}-op alg {alg}"


def _random_stream(seed, *, n_samples, feedback):
    """A random register stream in bursts: levels, pitches (with and without block or key
    changes), envelopes, waveforms, routing, 4-op and rhythm mode."""
    rng = np.random.default_rng(seed)
    ops = list(R.OPERATOR_OFFSETS)
    writes = [(0, 0x105, 1), (0, 0x104, int(rng.integers(0, 64)))]
    key = np.zeros(18, int)
    t = 0
    while t < n_samples:
        t += int(rng.choice([0, 1, 2, 40, 300]))
        for _ in range(int(rng.integers(1, 20))):
            high, ch = int(rng.integers(0, 2)), int(rng.integers(0, 9))
            c = 9 * high + ch
            r = rng.random()
            if r < 0.3:
                reg, v = 0x40 + ops[int(rng.integers(0, 18))], int(rng.integers(0, 256))
            elif r < 0.5:
                reg, v = 0xA0 + ch, int(rng.integers(0, 256))
            elif r < 0.65:
                key[c] ^= int(rng.random() < 0.3)
                reg, v = 0xB0 + ch, (int(key[c]) << 5) | int(rng.integers(0, 32))
            elif r < 0.75:
                reg, v = 0x20 + ops[int(rng.integers(0, 18))], int(rng.integers(0, 256))
            elif r < 0.85:
                reg, v = int(rng.choice([0x60, 0x80])) + ops[int(rng.integers(0, 18))], int(rng.integers(0, 256))
            elif r < 0.9:
                reg, v = 0xE0 + ops[int(rng.integers(0, 18))], int(rng.integers(0, 8))
            elif r < 0.98:
                reg, v = 0xC0 + ch, int(rng.integers(0, 256)) & (0xFF if feedback else 0xF1)
            else:
                reg, v = 0xBD, int(rng.integers(0, 256))
            writes.append((t, (high << 8) | reg, v))
            t += int(rng.integers(0, 3))
    return [w for w in writes if w[0] < n_samples]


def _render_cut_at_every_write(times, regs, values, n_samples):
    """The plain way: generate up to each write, write, go on (no soft writes)."""
    chip = Chip()
    out = np.empty((n_samples, 2), np.int16)
    pos = 0
    for t, reg, v in zip(times, regs, values):
        if t > pos:
            out[pos:t] = chip.generate(t - pos)
            pos = t
        chip.write(reg, v)
    out[pos:] = chip.generate(n_samples - pos)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_soft_writes_inside_a_span_sound_like_cutting_the_span(seed):
    # without feedback: the chip's shortcut for silent fed-back operators depends on where
    # spans end, which is the one thing the two ways do differently
    writes = _random_stream(seed, n_samples=12000, feedback=False)
    times, regs, values = (list(x) for x in zip(*writes))
    a = render_writes(times, regs, values, n_samples=12500, write_spacing=0)
    b = _render_cut_at_every_write(times, regs, values, 12500)
    assert np.abs(a).max() > 1000                 # the stream makes sound
    assert np.array_equal(a, b)


def test_soft_write_rules():
    chip = Chip()
    chip.write(0x105, 1)
    chip.write(0xA0, 0x40)
    chip.write(0x60, 0xF0)                         # modulator attack rate 15
    chip.write(0xB0, 0x20 | (4 << 2) | 1)          # key on, block 4
    chip.write(0x63, 0x80)                         # carrier attack rate 8: envelope moving
    chip.generate(10)
    assert chip.is_soft(0x43, 0x10)                # a level
    assert chip.is_soft(0xA0, 0x41)                # F-number low bits
    assert chip.is_soft(0xB0, 0x20 | (4 << 2) | 1)  # same key, same block
    assert not chip.is_soft(0xB0, (4 << 2) | 1)   # key off
    assert not chip.is_soft(0xB0, 0x20 | (5 << 2) | 1)  # new key-scale rate under an attack
    assert chip.is_soft(0x23, 0x02)                # only the multiplier changes
    assert not chip.is_soft(0x23, 0x22)            # sustain bit: the envelope's business
    assert not chip.is_soft(0x63, 0xF0) and not chip.is_soft(0xC0, 1)
    assert not chip.write_soft(0, 0xC0, 1) and chip.regs[0xC0] == 0
    # once both operators' attacks are over and the notes sustain (EGT), a new block is soft
    chip.write(0x23, 0x20)
    chip.write(0x20, 0x20)
    chip.generate(20000)
    assert chip.is_soft(0xB0, 0x20 | (5 << 2) | 1)


def test_feedback_loop_scalar_equals_vectorised():
    from wav2vgm.opl3 import emulator as E
    rng = np.random.default_rng(3)
    for n_ops, env_len in ((1, 1), (3, 500), (40, 1)):
        phase = rng.integers(0, 1024, (n_ops, 500))
        ws, fb = rng.integers(0, 8, n_ops), rng.integers(1, 8, n_ops)
        env = rng.integers(0, 300, (n_ops, env_len))
        h1 = rng.integers(-4000, 4000, (n_ops, 2)).astype(np.int32)
        h2 = h1.copy()
        a = E._feedback_scalar(phase, ws, env, fb, h1)
        saved, E._SCALAR_FEEDBACK_OPS = E._SCALAR_FEEDBACK_OPS, 0    # force the numpy loop
        try:
            b = E.feedback_operator(phase, ws, env, fb, h2)
        finally:
            E._SCALAR_FEEDBACK_OPS = saved
        assert np.array_equal(a, b) and np.array_equal(h1, h2)


def test_plain_write_refused_while_soft_writes_wait():
    chip = Chip()
    assert chip.write_soft(10, 0x43, 0x10)
    with pytest.raises(ParameterError, match="soft writes are queued"):
        chip.write(0xB0, 0x20)
    chip.generate(20)
    chip.write(0xB0, 0x20)                          # fine once they have landed


def test_render_spacing_lands_each_write_after_the_one_before():
    """Writes closer than the player's spacing queue up; later ones land at their own time."""
    w = _tone_writes()
    regs, vals = [r for r, _ in w], [v for _, v in w]
    # two bursts: the first all at 0, the second (the same writes again) far later
    times = [0] * len(w) + [500] * len(w)
    landed = []

    class Spy(Chip):
        def write(self, reg, value):
            landed.append(self.sample)
            super().write(reg, value)

        def write_soft(self, offset, reg, value):
            ok = super().write_soft(offset, reg, value)
            if ok:
                landed.append(self.sample + offset)
            return ok

    render_writes(times, regs + regs, vals + vals, n_samples=800, write_spacing=2, chip=Spy())
    k = len(w)
    assert landed[:k] == [1 + 2 * j for j in range(k)]          # one sample on, 2 apart
    assert landed[k:] == [501 + 2 * j for j in range(k)]        # the queue had drained by 500


def test_render_takes_a_long_file_s_writes_in_chunks(monkeypatch):
    """The writes become Python ints a chunk at a time; chunk edges change nothing."""
    rng = np.random.default_rng(3)
    w = _tone_writes()
    regs = [r for r, _ in w] + [R.operator_register(R.OP_KSL_TL, 0, 1)] * 300
    vals = [v for _, v in w] + rng.integers(0, 40, 300).tolist()
    times = np.sort(np.r_[np.zeros(len(w), int), rng.integers(10, 20000, 300)])
    whole = render_writes(times, regs, vals, n_samples=21000)
    monkeypatch.setattr("wav2vgm.opl3.emulator._WRITE_CHUNK", 7)
    assert np.array_equal(render_writes(times, regs, vals, n_samples=21000), whole)
    assert np.abs(whole).max() > 0


def test_a_vgm_renders_a_block_at_a_time():
    """``vgm_blocks`` (what ``wav2vgm render`` writes as it goes) holds, in blocks of about
    a second, the native render resampled whole (``render_vgm`` gathers the same blocks,
    so the comparison is with the whole-signal resampler, which sees no block edges)."""
    from pathlib import Path
    from wav2vgm.opl3.render import render_vgm, resample, vgm_blocks
    from wav2vgm.vgm import read_vgm
    vgm = read_vgm(str(Path(__file__).resolve().parents[1] / "samples" / "vgm" / "speech.vgm"))
    native = render_vgm(vgm, rate_hz=None)
    n, blocks = vgm_blocks(vgm, rate_hz=None)                  # native: one emulator span each
    assert np.array_equal(np.concatenate(list(blocks)), native)
    whole = resample(native, from_hz=R.NATIVE_RATE_INT, to_hz=44100)
    n, blocks = vgm_blocks(vgm, rate_hz=44100)
    parts = list(blocks)
    assert n == whole.shape[0] == sum(len(p) for p in parts)
    assert len(parts) >= 5 and max(len(p) for p in parts) <= 44100
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)
    assert np.abs(whole).max() > 0.01
