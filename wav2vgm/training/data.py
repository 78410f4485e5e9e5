"""Training data: random mixtures of codebook voices, rendered by the emulator.

Each example is one analysis frame of a mixture of 1-8 voices drawn from a
prior of plausible settings (timbres weighted towards the common ones,
base pitches log-uniform over the musical range, levels within 36 dB of the
loudest voice, independent start phases).  The voices are rendered by
:func:`wav2vgm.opl3.voices.render_voices` at the chip's rate, mixed,
resampled to 44.1 kHz and analysed by the converter's own spectrum and
feature code.  Labels: for every voice, its timbre class and log-frequency
bin (a set, so voice order does not matter) and its level relative to the
frame's peak.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
# scipy's resampler, with which the shipped model's training data were made: wav2vgm.resample
# equals it to rounding, but that moves these features by up to 3e-5 (2,000 examples, seed 3),
# so training keeps it and its data stay the shipped model's (start-up time does not matter here)
from scipy.signal import resample_poly

from ..methods import codebook, features
from ..opl3 import registers as R
from ..opl3.voices import VoiceBatch, render_voices

_RENDER = 4096            # native samples rendered per voice
_SPAN = 2400              # native samples kept (covers a 2048-sample window at 44.1 kHz)


@dataclass
class Prior:
    """The distribution voices are drawn from."""

    max_voices: int = 8
    f_min_hz: float = 40.0
    f_max_hz: float = 4000.0
    level_range_db: float = 36.0
    sine_weight: float = 4.0        # relative to 1 for every other timbre
    noise_weight: float = 1.5


def timbre_probabilities(prior: Prior) -> np.ndarray:
    w = np.ones(codebook.N_NETWORK_TIMBRES)
    w[0] = prior.sine_weight
    w[codebook.NOISE_CLASS] = prior.noise_weight
    return w / w.sum()


def draw_voices(rng: np.random.Generator, n_examples: int, prior: Prior):
    """Voice table: example index, timbre, base frequency (Hz), level (dB re loudest)."""
    n_vox = rng.integers(1, prior.max_voices + 1, n_examples)
    example = np.repeat(np.arange(n_examples), n_vox)
    n = example.size
    timbre = rng.choice(codebook.N_NETWORK_TIMBRES, size=n, p=timbre_probabilities(prior))
    f_hz = np.exp(rng.uniform(np.log(prior.f_min_hz), np.log(prior.f_max_hz), n))
    level = -rng.uniform(0, prior.level_range_db, n)
    level -= np.maximum.reduceat(level, np.r_[0, np.cumsum(n_vox)[:-1]])[example]  # loudest = 0 dB
    level -= rng.uniform(0, 12, n_examples)[example]                          # headroom
    return example, timbre, f_hz, level


def render_examples(example, timbre, f_hz, level_db, n_examples: int, rng) -> np.ndarray:
    """Mix the voices of each example; returns (n_examples, WINDOW) float32 at 44.1 kHz."""
    t = [codebook.TIMBRES[k] for k in timbre.tolist()]
    fnum, block = R.hz_to_fnum(f_hz, mult=1)
    tl = np.clip(np.rint(-level_db / R.TL_STEP_DB), 0, 63).astype(np.int64)
    tl1, tl2 = codebook.operator_tls(timbre, tl)
    batch = VoiceBatch(fnum=fnum, block=block, fb=np.array([x.fb for x in t]),
                       alg=np.array([x.cnt for x in t]),
                       mult=np.array([[x.mult1, x.mult2] for x in t]),
                       tl=np.stack([tl1, tl2], axis=1),
                       ws=np.stack([[x.ws1 for x in t], [x.ws2 for x in t]], axis=1))
    y = render_voices(batch, n_samples=_RENDER).astype(np.float32)
    offset = rng.integers(64, _RENDER - _SPAN, y.shape[0])
    idx = offset[:, None] + np.arange(_SPAN)[None, :]
    y = np.take_along_axis(y, idx, axis=1)
    mix = np.zeros((n_examples, _SPAN), np.float32)
    np.add.at(mix, example, y)
    mix /= float(R.FULL_SCALE_OPERATOR)
    mix44 = resample_poly(mix, 3675, 4143, axis=1)
    start = (mix44.shape[1] - features.WINDOW) // 2
    return mix44[:, start:start + features.WINDOW].astype(np.float32)


def make_batch(rng: np.random.Generator, n_examples: int, prior: Prior):
    """One chunk of training data.

    Returns ``x`` (n, N_BINS) features and per log bin: ``present`` (uint8:
    a voice's loudest partial is here), ``cls`` (its timbre, -1 where none)
    and ``lvl`` (its level in dB re the frame peak / 20).
    """
    example, timbre, f_hz, level_db = draw_voices(rng, n_examples, prior)
    audio = render_examples(example, timbre, f_hz, level_db, n_examples, rng)
    mag = features.analysis_spectra(audio)
    x, peak_db = features.model_features(mag)
    tl = np.clip(np.rint(-level_db / R.TL_STEP_DB), 0, 63)
    amp_db = -tl * R.TL_STEP_DB                       # the level the chip actually played
    f_main = f_hz * codebook.strongest_partial()[timbre]
    j = np.rint(features.hz_to_bin(f_main)).astype(int)
    audible = (amp_db - peak_db[example] > features.FLOOR_DB + 20) & (j >= 0) & (j < features.N_BINS)
    # one label per (frame, bin): the loudest voice there wins (written last)
    order = np.argsort(amp_db)
    e, k, jj = example[order], timbre[order], j[order]
    keep = audible[order]
    e, k, jj, a = e[keep], k[keep], jj[keep], amp_db[order][keep]
    present = np.zeros((n_examples, features.N_BINS), np.uint8)
    cls = np.full((n_examples, features.N_BINS), -1, np.int64)
    lvl = np.zeros((n_examples, features.N_BINS), np.float32)
    present[e, jj] = 1
    cls[e, jj] = k
    lvl[e, jj] = (a - peak_db[e]) / 20.0
    return x, present, cls, lvl


def make_dataset(n_examples: int, *, seed: int, prior: Prior | None = None, chunk: int = 2000,
                 progress=None):
    """``n_examples`` examples from ``seed`` (deterministic), built chunk by chunk."""
    prior = prior or Prior()
    rng = np.random.default_rng(seed)
    parts = []
    done = 0
    while done < n_examples:
        n = min(chunk, n_examples - done)
        parts.append(make_batch(rng, n, prior))
        done += n
        if progress:
            progress(n)
    return tuple(np.concatenate(p) for p in zip(*parts))
