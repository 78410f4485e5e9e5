"""Training: the data generator (numpy only, always tested) and, where the ``train``
extra is installed, a tiny train -> export -> convert round trip."""

from __future__ import annotations

import numpy as np
import pytest

from wav2vgm.methods import codebook, features
from wav2vgm.training.data import Prior, draw_voices, make_dataset


def test_dataset_is_deterministic_and_labels_are_consistent():
    a = make_dataset(120, seed=5, chunk=50)
    b = make_dataset(120, seed=5, chunk=50)
    c = make_dataset(120, seed=6, chunk=50)
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    x, present, cls, lvl = a
    assert x.shape == present.shape == cls.shape == lvl.shape == (120, features.N_BINS)
    assert np.isfinite(x).all()
    # a labelled bin has a timbre and only a labelled bin has one
    assert np.array_equal(present == 1, cls >= 0)
    assert cls.max() < codebook.N_NETWORK_TIMBRES
    # every frame has a voice labelled, and none below the audible floor (levels are in
    # dB re the frame's loudest feature bin / 20; a noise voice spreads its power, so its
    # level may lie above that bin's)
    assert (present.sum(axis=1) >= 1).all()
    assert (lvl[present == 1] * 20 >= features.FLOOR_DB + 20 - 1e-3).all()
    assert (lvl[present == 0] == 0).all()


def test_single_sines_are_labelled_where_their_feature_peaks():
    """With one sine per frame, the labelled bin is the features' loudest: within a bin
    above 55 Hz, two below (where the FFT's 21.5 Hz bins are wider than semitones)."""
    prior = Prior(max_voices=1, sine_weight=1e9, noise_weight=1e-9)
    x, present, cls, _ = make_dataset(300, seed=11, prior=prior)
    assert (present.sum(axis=1) == 1).all() and (cls[present == 1] == 0).all()
    labelled = np.argmax(present, axis=1)
    off = np.abs(np.argmax(x, axis=1) - labelled)
    assert (off <= np.where(labelled >= 12, 1, 2)).all()
    assert (off == 0).mean() > 0.8


def test_prior_draws_plausible_voices():
    rng = np.random.default_rng(0)
    prior = Prior()
    example, timbre, f_hz, level = draw_voices(rng, 500, prior)
    counts = np.bincount(example, minlength=500)
    assert counts.min() >= 1 and counts.max() <= prior.max_voices
    assert (f_hz >= prior.f_min_hz).all() and (f_hz <= prior.f_max_hz).all()
    # each example's loudest voice sits 0-12 dB below full level, the rest within the range
    loudest = np.maximum.reduceat(level, np.r_[0, np.cumsum(counts)[:-1]])
    assert (loudest <= 0).all() and (loudest >= -12).all()
    assert level.min() >= -(prior.level_range_db + 12)
    # sines are drawn more often than any other timbre
    freq = np.bincount(timbre, minlength=codebook.N_NETWORK_TIMBRES)
    assert freq[0] == freq.max()


def test_tiny_training_run_exports_a_model_the_converter_accepts(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from wav2vgm.audio import write_wav
    from wav2vgm.batch import convert_file
    from wav2vgm.convert import ConvertOptions
    from wav2vgm.training.model import ModelConfig
    from wav2vgm.training.train import TrainConfig, train
    from wav2vgm.vgm import read_vgm

    cfg = TrainConfig(n_train=256, n_val=64, batch_size=64, epochs=1, out_dir=str(tmp_path),
                      model=ModelConfig(width=8, dilations=(1, 2)))
    summary = train(cfg, log=lambda m: None)
    assert (tmp_path / "inverse.onnx").is_file() and (tmp_path / "atoms.npz").is_file()
    assert summary["n_params"] < 5000 and len(summary["history"]) == 1
    t = np.arange(22050) / 44100
    write_wav(str(tmp_path / "a.wav"), (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 44100)
    out = tmp_path / "a.vgm"
    convert_file(str(tmp_path / "a.wav"), str(out),
                 ConvertOptions(model_path=str(tmp_path / "inverse.onnx")))
    assert len(read_vgm(str(out)).regs) > 0


def test_training_twice_writes_the_same_model(tmp_path, monkeypatch):
    """One seed, one machine: the same bytes (the card's reproducibility claim)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import wav2vgm.methods.pursuit as pursuit
    from wav2vgm.training.model import ModelConfig
    from wav2vgm.training.train import TrainConfig, train

    monkeypatch.setattr(pursuit, "write_atoms", lambda path: None)     # not compared here

    def onnx_bytes(name, seed=1234):
        train(TrainConfig(n_train=256, n_val=64, batch_size=64, epochs=2, seed=seed,
                          out_dir=str(tmp_path / name), model=ModelConfig(width=8, dilations=(1, 2))),
              log=lambda m: None)
        return (tmp_path / name / "inverse.onnx").read_bytes()

    first = onnx_bytes("first")
    assert onnx_bytes("second") == first
    assert onnx_bytes("other", seed=7) != first                         # the seed matters
