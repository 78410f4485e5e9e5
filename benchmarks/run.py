"""Benchmarks: quality and speed per method and clip, emulator speed, memory.

    python benchmarks/run.py quality [--player emulator|adplay] [--clips DIR ...]
    python benchmarks/run.py speed           # x real time of each method on a 60 s clip
    python benchmarks/run.py voices          # batch voice renders per second (one core)
    python benchmarks/run.py memory          # peak memory converting 1, 20 and 60 minutes
    python benchmarks/run.py all

Figures go to stdout as Markdown tables; the README and the model card quote them.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wav2vgm.audio import AUDIO_SUFFIXES, load_audio, write_wav  # noqa: E402
from wav2vgm.batch import convert_file  # noqa: E402
from wav2vgm.convert import ConvertOptions  # noqa: E402
from wav2vgm.quality import score_vgm  # noqa: E402

METHODS = ("sines", "model")
DEFAULT_DIRS = (ROOT / "samples", ROOT.parent / "shared" / "corpus")


def clips(dirs) -> list[Path]:
    out = []
    for d in dirs:
        d = Path(d)
        if d.is_dir():
            out += sorted(p for p in d.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    return out


def convert_timed(src: Path, dst: Path, method: str, *, repeats: int = 1) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        convert_file(str(src), str(dst), ConvertOptions(method=method))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def quality(dirs, player: str) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips(dirs):
            audio, rate = load_audio(str(clip))
            seconds = audio.size / rate
            row = [clip.name, f"{seconds:.1f}"]
            dist = {}
            for method in METHODS:
                out = Path(tmp) / f"{clip.stem}.{method}.vgm"
                t = convert_timed(clip, out, method, repeats=3)
                d = score_vgm(str(clip), str(out), player=player).distance_db
                dist[method] = d
                row += [f"{d:.2f}", f"{seconds / t:.0f}x"]
            row.append(f"{100 * (1 - dist['model'] / dist['sines']):+.0f}%")
            rows.append(row)
            print(" | ".join(row), file=sys.stderr, flush=True)
    print(f"\nlog-mel distance (dB, lower is better; rendered by {player}) and conversion speed\n")
    print("| clip | s | sines dB | sines speed | model dB | model speed | model vs sines |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def speed() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(60 * 44100) / 44100
    f0 = 220 * 2 ** (np.floor(t * 2) % 12 / 12)
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / 44100) + 0.05 * rng.standard_normal(t.size)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clip60.wav"
        write_wav(str(src), x.astype(np.float32), 44100)
        print("| method | 60 s clip, median of 5 | x real time |")
        print("|---|---|---|")
        for method in METHODS:
            convert_timed(src, Path(tmp) / "warm.vgm", method)            # warm-up (model load)
            sec = convert_timed(src, Path(tmp) / "out.vgm", method, repeats=5)
            print(f"| {method} | {sec:.2f} s | {60 / sec:.0f}x |")


def voices() -> None:
    from wav2vgm.opl3.voices import VoiceBatch, render_voices
    rng = np.random.default_rng(0)
    n = 2000
    for n_ops, algs in ((2, 2), (4, 4)):
        vb = VoiceBatch(rng.integers(100, 1023, n), rng.integers(1, 7, n), rng.integers(0, 8, n),
                        rng.integers(0, algs, n), rng.integers(0, 16, (n, n_ops)),
                        rng.integers(0, 63, (n, n_ops)), rng.integers(0, 8, (n, n_ops)))
        best = min(_time(lambda: render_voices(vb, n_samples=4096)) for _ in range(3))
        print(f"| {n_ops}-op voices | {n} x 4096 samples | {n / best:.0f} renders/s |")


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def memory() -> None:
    """Peak RSS of a fresh process converting 1, 20 and 60 minutes of audio."""
    print("| audio | method | peak memory |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in (1, 20, 60):
            src = Path(tmp) / f"m{minutes}.flac"
            _long_clip(src, minutes)
            for method in METHODS:
                code = ("import resource,sys; from wav2vgm.batch import convert_file;"
                        "from wav2vgm.convert import ConvertOptions;"
                        f"convert_file({str(src)!r}, {str(Path(tmp) / 'o.vgm')!r}, "
                        f"ConvertOptions(method={method!r}));"
                        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
                out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                     cwd=ROOT, check=True)
                print(f"| {minutes} min | {method} | {int(out.stdout.split()[-1]) / 1024:.0f} MB |",
                      flush=True)


def _long_clip(path: Path, minutes: int) -> None:
    import soundfile as sf
    rng = np.random.default_rng(minutes)
    with sf.SoundFile(str(path), "w", 44100, 1, "PCM_16") as f:
        for i in range(minutes * 6):
            t = np.arange(441000) / 44100 + i * 10
            f0 = 110 * 2 ** ((i % 24) / 12)
            f.write((0.2 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(t.size))
                    .astype(np.float32))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["quality", "speed", "voices", "memory", "all"])
    p.add_argument("--player", choices=["emulator", "adplay"], default="emulator")
    p.add_argument("--clips", nargs="*", default=[str(d) for d in DEFAULT_DIRS])
    a = p.parse_args(argv)
    if a.what in ("voices", "all"):
        voices()
    if a.what in ("speed", "all"):
        speed()
    if a.what in ("quality", "all"):
        quality(a.clips, a.player)
    if a.what in ("memory", "all"):
        memory()
    return 0


if __name__ == "__main__":
    sys.exit(main())
