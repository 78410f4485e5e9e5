"""Regenerate the sample clips in this folder (free to ship: made with espeak-ng, sox,
fluidsynth + FluidR3 and the project's own OPL3 writer).

    python samples/make_samples.py          # needs espeak-ng, sox, fluidsynth, fluid-soundfont-gm

Each clip is mono 16-bit 44.1 kHz, a few seconds long; ``vgm/`` holds each
clip converted by wav2vgm with the default options.  ``opl_patches.wav``
is what the project's emulator plays for a VGM of random codebook patches
(``opl_patches.vgm``), so a perfect converter could reproduce it exactly.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RATE = 44100
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


def _run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _to_mono44(src: Path, dst: Path, seconds: float | None = None) -> None:
    cmd = ["sox", "-D", str(src), "-r", str(RATE), "-c", "1", "-b", "16", str(dst)]
    if seconds:
        cmd += ["trim", "0", str(seconds)]
    cmd += ["norm", "-1"]
    _run(cmd)


def speech(tmp: Path, out: Path = HERE, *, name: str = "speech.wav", voice: str = "en",
           text: str = "The quick brown fox jumps over the lazy dog. Sound chips sing too.") -> None:
    raw = tmp / "speech_raw.wav"
    _run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text])
    _to_mono44(raw, out / name)


def chord(tmp: Path) -> None:
    _run(["sox", "-D", "-n", "-r", str(RATE), "-c", "1", "-b", "16", str(HERE / "chord.wav"),
          "synth", "3", "pluck", "C4", "pluck", "E4", "pluck", "G4", "pluck", "C5",
          "remix", "-", "fade", "0.01", "3", "0.3", "norm", "-1"])


def _midi_melody(path: Path, notes=(60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72),
                 program: int = 0, *, modulation: int = 0, ticks: int = 240) -> None:
    """A short melody as a type-0 MIDI file (General MIDI ``program``), ``ticks`` per note
    (480 a beat); ``modulation`` > 0 sets the modulation wheel (CC 1: vibrato) first."""
    ev = bytearray(b"\x00\xc0" + bytes([program]))
    if modulation:
        ev += bytes([0x00, 0xB0, 1, modulation])
    for n in notes:
        ev += bytes([0x00, 0x90, n, 96])
        ev += _vlq(ticks) + bytes([0x80, n, 0])
    ev += b"\x00\xff\x2f\x00"
    track = b"MTrk" + struct.pack(">I", len(ev)) + bytes(ev)
    head = b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480)
    path.write_bytes(head + track)


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def melody(tmp: Path, out: Path = HERE, *, name: str = "melody.wav", program: int = 0,
           notes=(60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72), modulation: int = 0,
           ticks: int = 240) -> None:
    mid = tmp / "melody.mid"
    _midi_melody(mid, notes, program, modulation=modulation, ticks=ticks)
    raw = tmp / "melody_raw.wav"
    _run(["fluidsynth", "-ni", "-F", str(raw), "-r", str(RATE), SOUNDFONT, str(mid)])
    _to_mono44(raw, out / name, seconds=4.0)


def patch_chords(seed: int) -> list[list[tuple[int, float, int]]]:
    """The random patches of :func:`opl_patches`: 8 chords of 3 (timbre, base pitch in Hz, carrier TL)."""
    sys.path.insert(0, str(HERE.parent))
    from wav2vgm.methods import codebook

    rng = np.random.default_rng(seed)
    return [[(int(rng.integers(0, codebook.N_NETWORK_TIMBRES)),
              float(np.exp(rng.uniform(np.log(110), np.log(880)))), int(rng.integers(0, 12)))
             for _ in range(3)] for _ in range(8)]


def opl_patches(tmp: Path, out: Path = HERE, *, name: str = "opl_patches", seed: int = 2026,
                key_on_jitter: int = 0, write_wav_file: bool = True) -> Path:
    """Random codebook patches played by the project's own OPL3 writer and emulator.

    ``key_on_jitter`` > 0 delays each note's key-on by up to that many samples
    (its own random draw, seed 99): the same patches at other relative phases,
    which ``benchmarks/run.py floor`` scores against the clip.  Returns the VGM's path.
    """
    sys.path.insert(0, str(HERE.parent))
    from wav2vgm.audio import write_wav
    from wav2vgm.methods import codebook
    from wav2vgm.opl3 import registers as R
    from wav2vgm.opl3.render import render_vgm
    from wav2vgm.vgm import read_vgm, write_vgm

    jitter = np.random.default_rng(99)
    events = [(0, R.REG_NEW, 1)]
    t = 64
    for step, chord in enumerate(patch_chords(seed)):      # 8 chords of 3 voices, 0.5 s each
        for ch, (k, f, tl2) in enumerate(chord):
            fields = codebook.voice_fields(k, f)
            tl_op1, tl_op2 = (int(v) for v in codebook.operator_tls(k, tl2))
            op1 = R.Operator(mult=fields["mult1"], tl=tl_op1,
                             ws=fields["ws1"], rr=8)
            op2 = R.Operator(mult=1, tl=tl_op2, ws=fields["ws2"], rr=8)
            on = t + int(jitter.integers(0, key_on_jitter + 1)) if key_on_jitter else t
            if step:
                events.append((t - 40, R.channel_register(R.CH_KEY_BLOCK_FNUM_HI, ch), 0))
            for op, o in ((0, op1), (1, op2)):
                for base, v in zip(R.OPERATOR_BASES, o.register_bytes()):
                    events.append((on, R.operator_register(base, ch, op), v))
            events.append((on, R.channel_register(R.CH_OUT_FB_CNT, ch),
                           R.c0_value(fields["fb"], fields["cnt"])))
            events.append((on, R.channel_register(R.CH_FNUM_LO, ch), int(fields["fnum"]) & 0xFF))
            events.append((on, R.channel_register(R.CH_KEY_BLOCK_FNUM_HI, ch),
                           R.b0_value(int(fields["fnum"]), int(fields["block"]), True)))
        t += RATE // 2
    events.sort(key=lambda e: e[0])
    vgm_path = out / f"{name}.vgm"
    write_vgm(str(vgm_path), events, end_samples=t)
    if write_wav_file:
        audio = render_vgm(read_vgm(str(vgm_path)), rate_hz=RATE).mean(axis=1)
        write_wav(str(out / f"{name}.wav"), audio / max(np.abs(audio).max(), 1e-9) * 0.9, RATE)
    return vgm_path


def main() -> int:
    for tool in ("sox", "espeak-ng", "fluidsynth"):
        if shutil.which(tool) is None:
            print(f"make_samples: {tool} is not installed", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        speech(tmp)
        chord(tmp)
        melody(tmp)
        opl_patches(tmp)
    convert_all()
    return 0


def convert_all() -> None:
    """Each clip converted with the default method, into samples/vgm/."""
    sys.path.insert(0, str(HERE.parent))
    from wav2vgm.batch import convert_file
    from wav2vgm.convert import ConvertOptions
    out = HERE / "vgm"
    out.mkdir(exist_ok=True)
    for wav in sorted(HERE.glob("*.wav")):
        convert_file(str(wav), str(out / f"{wav.stem}.vgm"), ConvertOptions())


if __name__ == "__main__":
    sys.exit(main())
