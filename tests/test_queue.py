"""The player's write queue and the governor that keeps register writes within it."""

from __future__ import annotations

import numpy as np
import pytest

from wav2vgm.opl3 import registers as R
from wav2vgm.opl3.emulator import render_writes
from wav2vgm.opl3.render import resample
from wav2vgm.opl3.queue import WRITE_SPACING, WriteGovernor, arrival_lags
from wav2vgm.spectrum import logmel_distance
from wav2vgm.vgm import VGM_RATE_HZ

NATIVE_PER_VGM = R.NATIVE_RATE_INT / VGM_RATE_HZ


def _loop_lags(n_writes, drain, lag):
    out, a = [], 0.0
    for k, (n, d) in enumerate(zip(n_writes, drain)):
        a = max(0.0, (lag if k == 0 else a + WRITE_SPACING * n_writes[k - 1]) - d)
        out.append(a)
    return np.array(out)


def test_arrival_lags_is_the_lindley_recursion():
    rng = np.random.default_rng(1)
    n_writes = rng.integers(0, 60, 500)
    drain = rng.uniform(20, 90, 500)
    for lag in (0.0, 37.5, 400.0):
        assert np.allclose(arrival_lags(n_writes, drain, lag=lag), _loop_lags(n_writes, drain, lag))


def _busy_images(n_updates: int, *, seed: int = 0, n_channels: int = 18, glide: int = 2):
    """Images of 18 keyed channels whose levels glide every update (both operators),
    with a few note changes: about 36 level writes an update."""
    rng = np.random.default_rng(seed)
    fr = R.ChannelFrames.silent(n_updates)
    fr.key[:, :n_channels] = True
    fr.cnt[:] = 1
    fr.mult1[:] = fr.mult2[:] = 1
    fr.block[:] = 4
    fr.fnum[:] = 300 + 20 * np.arange(18)[None, :]
    step = rng.integers(-glide, glide + 1, (n_updates, 18, 2))
    step[step == 0] = 1
    tl = np.clip(20 + np.cumsum(step, axis=0), 0, 63)
    tl[:, n_channels:] = 63
    fr.tl1[:], fr.tl2[:] = tl[..., 0], tl[..., 1]
    # a few notes change pitch (writes that must go at once)
    jumps = rng.random((n_updates, 18)) < 0.03
    fr.fnum[:] += np.cumsum(jumps, axis=0) * 7
    return np.ascontiguousarray(R.channel_images(fr))


def _replay(f, reg, value, n_updates):
    """The chip's registers after each update, from the writes."""
    state = np.zeros(R.N_REGISTERS, np.uint8)
    out = np.zeros((n_updates, R.N_REGISTERS), np.uint8)
    i = 0
    for k in range(n_updates):
        while i < len(f) and f[i] == k:
            state[reg[i]] = value[i]
            i += 1
        out[k] = state
    return out


def _governed(images, times, chunk, *, previous=None, **kw):
    g = WriteGovernor(**kw)
    fs, regs, vals = [], [], []
    prev = previous
    for lo in range(0, len(images), chunk):
        part = images[lo:lo + chunk]
        f, r, v = g.writes(part, times[lo:lo + chunk], previous=prev, last=lo + chunk >= len(images))
        fs.append(f + lo), regs.append(r), vals.append(v)
        prev = part[-1]
    return np.concatenate(fs), np.concatenate(regs), np.concatenate(vals), g


def test_calm_updates_pass_through_unchanged():
    images = _busy_images(201, n_channels=3)             # about 6 level writes an update
    times = np.arange(200) * 60
    f0, r0, v0 = R.image_writes(images[1:], previous=images[0])
    f, r, v, g = _governed(images[1:], times, 64, previous=images[0])
    assert np.array_equal(f, f0) and np.array_equal(r, r0) and np.array_equal(v, v0)
    assert g.n_dropped == g.n_delayed == 0


@pytest.mark.parametrize("chunk", [1000, 97])
def test_busy_updates_fit_the_queue_and_levels_are_at_most_one_update_late(chunk):
    n = 600
    images = _busy_images(n)
    times = np.arange(n) * 40                             # 45 native samples: 22 writes an update
    f0, r0, v0 = R.image_writes(images)
    f, r, v, g = _governed(images, times, chunk)
    assert g.n_dropped + g.n_delayed > 1000
    # everything but level writes goes as computed, at its update
    tl = np.isin(r0, [R.operator_register(R.OP_KSL_TL, c, op) for c in range(18) for op in (0, 1)])
    must = set(zip(f0[~tl].tolist(), r0[~tl].tolist(), v0[~tl].tolist()))
    assert must <= set(zip(f.tolist(), r.tolist(), v.tolist()))
    # in the order image_writes gives: each update's keys increasing
    keys = R.write_keys(f, r)
    assert np.all(np.diff(keys) > 0)
    # each register holds its value of this update or of the one before; the last update exact
    state = _replay(f, r, v, n)
    late = state[1:] != images[1:]
    assert np.all(~late | (state[1:] == images[:-1]))
    assert np.array_equal(state[-1], images[-1])
    # the queue keeps up: ungoverned it runs ever later
    drain = np.full(n, 40 * NATIVE_PER_VGM)
    lag_free = arrival_lags(np.bincount(f0, minlength=n), drain)
    lag_gov = arrival_lags(np.bincount(f, minlength=n), drain)
    assert lag_free.max() > 2000
    # governed, the backlog never passes that of the first update (every register at
    # once), and once that has drained it stays under one update's time
    assert lag_gov.max() <= lag_gov[1] + 1e-9
    assert lag_gov[60:].max() <= 40 * NATIVE_PER_VGM


def test_governed_writes_play_closer_to_the_intended_sound():
    """Through the emulator with the player's write queue: the governed writes sound more
    like the writes played on time (the project's yardstick) than the same writes
    played as the queue delays them."""
    n = 400
    images = _busy_images(n, seed=3, glide=3)
    times = np.arange(n) * 40
    native = np.rint(times * NATIVE_PER_VGM).astype(np.int64)
    n_samples = int(native[-1]) + 200
    f0, r0, v0 = R.image_writes(images)
    f, r, v, _ = _governed(images, times, 128)

    def render(f, r, v, spacing=WRITE_SPACING):
        x = render_writes(native[f], r, v, n_samples=n_samples, write_spacing=spacing)
        return resample(x[:, :1].astype(np.float32) / 32768, from_hz=R.NATIVE_RATE_INT,
                        to_hz=VGM_RATE_HZ)[:, 0]

    ideal = render(f0, r0, v0, spacing=0)
    queued = logmel_distance(ideal, render(f0, r0, v0), rate_hz=VGM_RATE_HZ).distance_db
    governed = logmel_distance(ideal, render(f, r, v), rate_hz=VGM_RATE_HZ).distance_db
    assert governed < 0.85 * queued


def test_a_loop_point_writes_everything():
    images = _busy_images(50)
    g = WriteGovernor()
    g.writes(images[:20], np.arange(20) * 40)
    full = R.unknown_state(images[20])
    f, r, v = g.writes(images[20:21], np.array([800]), previous=full, write_all=True)
    f0, r0, v0 = R.image_writes(images[20:21], previous=full)
    assert np.array_equal(r, r0) and np.array_equal(v, v0)
