"""Folder batches: output names and the GD3 title of stdin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wav2vgm.batch import run_convert
from wav2vgm.convert import ConvertOptions, gd3_for

ROOT = Path(__file__).resolve().parents[1]


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


_REUSE = """
import resource, sys
import numpy as np
from wav2vgm.batch import keep_freed_memory
if sys.argv[1] == "on":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def arrays():                         # a conversion's large temporaries: 8, 12, 16 and 2 MB
    xs = [np.ones(n) for n in (2**20, 3 * 2**19, 2**21, 2**18)]
    del xs
f0 = faults(); arrays(); f1 = faults()
for _ in range(9):
    arrays()
print(f1 - f0, faults() - f1)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_command_keeps_freed_memory_for_reuse():
    """keep_freed_memory: arrays allocated again after being freed reuse their pages
    (no page faults), where by default the allocator gives them back and faults them in
    again each time."""
    def run(mode):
        out = subprocess.run([sys.executable, "-c", _REUSE, mode], capture_output=True,
                             text=True, check=True, cwd=ROOT)
        return [int(v) for v in out.stdout.split()]
    first, again = run("on")
    assert first > 1000 and again < first / 10
    first, again = run("off")
    assert again > 3 * first                # the default: faulted in afresh every time


def test_the_convert_command_keeps_freed_memory(tmp_path, monkeypatch):
    import wav2vgm.batch as B
    calls = []
    monkeypatch.setattr(B, "keep_freed_memory", lambda: calls.append(1) or True)
    x = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 44100)
    sf.write(tmp_path / "a.wav", x, 44100)
    assert B.run_convert([str(tmp_path / "a.wav")], str(tmp_path / "a.vgm"),
                         ConvertOptions(method="sines"), quiet=True) == 0
    assert calls == [1]
