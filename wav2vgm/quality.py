"""The yardstick: how close a VGM, as a player renders it, sounds to the input audio."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np

from . import spectrum
from .audio import load_audio
from .errors import InputError, ParameterError

ADPLAY_ARGS = ("-e", "nuked", "--stereo", "--16bit", "-f", "49716", "-O", "disk")


def adplay_render(vgm_path: str, *, timeout_s: float = 600.0) -> tuple[np.ndarray, int]:
    """Render a VGM with the reference player (AdPlug's adplay, Nuked core) -> (stereo, rate)."""
    exe = shutil.which("adplay")
    if exe is None:
        raise ParameterError("--player adplay needs adplay on PATH (Debian package 'adplay')")
    import soundfile as sf
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.wav")
        src = os.path.join(tmp, "in.vgm")
        data = open(vgm_path, "rb").read()
        if data[:2] == b"\x1f\x8b":
            import gzip
            data = gzip.decompress(data)
        with open(src, "wb") as f:
            f.write(data)
        try:
            subprocess.run([exe, *ADPLAY_ARGS, "-d", out, src], check=True, timeout=timeout_s,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            y, rate = sf.read(out, dtype="float32", always_2d=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, RuntimeError) as exc:
            raise InputError(f"adplay could not play {vgm_path}: {exc}") from None
    return y, rate


def render_for_score(vgm_path: str, *, player: str = "emulator", stereo: bool = False
                     ) -> np.ndarray:
    """Mono float32 at 44.1 kHz of a VGM as ``player`` renders it: the mean of its two
    outputs, or with ``stereo`` both, (n, 2)."""
    if player == "adplay":
        both, rate = adplay_render(vgm_path)
        from .opl3.render import resample
        if stereo:
            return resample(both, from_hz=rate, to_hz=44100)
        return resample(both.mean(axis=1)[:, None], from_hz=rate, to_hz=44100)[:, 0]
    from .opl3.render import render_vgm
    from .vgm import read_vgm
    both = render_vgm(read_vgm(vgm_path), rate_hz=44100)
    return both if stereo else both.mean(axis=1)


def score_vgm(reference_path: str, vgm_path: str, *, player: str = "emulator",
              plot_path: str | None = None) -> "spectrum.Score":
    """Log-mel distance between a reference recording and a VGM as ``player`` renders it."""
    ref, _ = load_audio(reference_path, target_rate_hz=44100)
    test = render_for_score(vgm_path, player=player)
    result = spectrum.logmel_distance(ref, test, rate_hz=44100)
    if plot_path:
        spectrum.spectrogram_figure(ref, test, rate_hz=44100, path=plot_path)
    return result


def score_sides(reference_path: str, vgm_path: str, *, player: str = "emulator"
                ) -> dict[str, "spectrum.Score | None"]:
    """Each output of the VGM as ``player`` renders it against that side of the reference
    (a mono reference: against it twice): ``{"left": Score, "right": Score}``, None for a
    side where the reference is silent.

    Unlike :func:`score_vgm`, which hears the mean of the two outputs, this is what
    each of two speakers plays: the chip mixes its left output a sample before its right
    for 24 of its 36 operator slots, so that mean loses high partials neither side does
    (``benchmarks/run.py sides``), and it cannot tell a note on the wrong side.
    """
    from .audio import open_audio
    with open_audio(reference_path, target_rate_hz=44100) as stream:
        parts = list(stream.blocks(sides=True))
    ref = np.concatenate(parts)[:, 1:] if parts else np.zeros((0, 2), np.float32)
    if not np.any(ref):
        raise ParameterError(f"reference {reference_path} is silent")
    return side_distances(ref, render_for_score(vgm_path, player=player, stereo=True))


def side_distances(reference: np.ndarray, test: np.ndarray) -> dict[str, "spectrum.Score | None"]:
    """:func:`score_sides` of a reference (n, 2) or mono (n,) and a render (m, 2), both at
    44.1 kHz."""
    ref = np.asarray(reference)
    ref = np.column_stack([ref, ref]) if ref.ndim == 1 else ref
    return {side: (spectrum.logmel_distance(ref[:, j], test[:, j], rate_hz=44100)
                   if np.any(ref[:, j]) else None)
            for j, side in enumerate(("left", "right"))}
