"""The emulator against the reference player (adplay + Nuked OPL3), case by case."""

from __future__ import annotations


import numpy as np
import pytest

from conftest import needs_adplay
from opl3_cases import all_cases
from wav2vgm import spectrum
from wav2vgm.opl3.render import render_events, resample
from wav2vgm.quality import adplay_render
from wav2vgm.vgm import vgm_bytes

CASES = all_cases()
DB_LIMIT = 1.0
RHYTHM_LIMIT = 4.0      # rhythm mode is approximate (noise drums differ in detail)


def _adplay(tmp_path, case) -> np.ndarray:
    src = tmp_path / f"{case.name}.vgm"
    src.write_bytes(vgm_bytes(sorted(case.writes, key=lambda w: w[0]), end_samples=case.length))
    y, rate = adplay_render(str(src))
    assert rate == 49716
    return np.rint(y * 32768).astype(np.int64)


def _ours(case) -> np.ndarray:
    w = sorted(case.writes, key=lambda x: x[0])
    y = render_events([x[0] for x in w], [x[1] for x in w], [x[2] for x in w],
                      end_vgm=case.length, rate_hz=None)
    return np.rint(y * 32768).astype(np.int64)


def _align(ref, ours):
    """Both renders from the first sample either one sounds, same length."""
    a = np.flatnonzero(np.abs(ref).max(axis=1) > 2)
    b = np.flatnonzero(np.abs(ours).max(axis=1) > 2)
    assert a.size and b.size, "a render is silent"
    n = min(ref.shape[0] - a[0], ours.shape[0] - b[0])
    return ref[a[0]:a[0] + n], ours[b[0]:b[0] + n]


def _distance(ref, ours) -> float:
    worst = 0.0
    for side in (0, 1):
        r = resample(ref[:, side:side + 1] / 32768.0, from_hz=49716, to_hz=44100)[:, 0]
        o = resample(ours[:, side:side + 1] / 32768.0, from_hz=49716, to_hz=44100)[:, 0]
        if np.abs(r).max() < 1e-4 and np.abs(o).max() < 1e-4:
            continue
        if np.abs(r).max() < 1e-4:
            return np.inf
        worst = max(worst, spectrum.logmel_distance(r, o, rate_hz=44100).distance_db)
    return worst


def test_suite_covers_the_chip():
    names = [c.name for c in CASES]
    assert len(CASES) >= 30
    assert all(f"waveform-{w}" in names for w in range(8))
    assert all(f"feedback-{f}" in names for f in range(8))
    assert all(f"four-op-alg-{a}" in names for a in range(4))
    assert {"eighteen-channels", "percussive", "release-rekey", "glide", "ksl-ksr",
            "lfo-c0", "bank1-fm", "bank1-additive"} <= set(names)


@pytest.mark.adplay
@needs_adplay
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matches_reference_player(case, tmp_path):
    ref, ours = _align(_adplay(tmp_path, case), _ours(case))
    d = _distance(ref, ours)
    limit = RHYTHM_LIMIT if case.name == "rhythm" else DB_LIMIT
    assert d <= limit, f"{case.name}: {d:.3f} dB log-mel distance to adplay"
    if case.exact:
        diff = np.abs(ref - ours)[: ref.shape[0] - 64]
        assert diff.max() == 0, f"{case.name}: differs by up to {diff.max()} at sample {diff.argmax()}"
