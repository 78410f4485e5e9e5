"""Folder batches: output names and the GD3 title of stdin."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from wav2vgm.batch import run_convert
from wav2vgm.convert import ConvertOptions, gd3_for


def test_inputs_differing_only_in_suffix_get_distinct_outputs(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    x = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 44100)
    sf.write(src / "a.wav", x, 44100)
    sf.write(src / "a.flac", x, 44100)
    sf.write(src / "b.wav", x, 44100)
    code = run_convert([str(src)], str(tmp_path / "out"), ConvertOptions(method="sines"),
                       jobs=1, quiet=True)
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["a.flac.vgm", "a.wav.vgm", "b.vgm"]


def test_stdin_title():
    assert gd3_for(ConvertOptions(), "<stdin>").title == "stdin"
    assert gd3_for(ConvertOptions(), "-").title == "stdin"
    assert gd3_for(ConvertOptions(), "/x/song.flac").title == "song"
    assert gd3_for(ConvertOptions(title="T"), "/x/song.flac").title == "T"
