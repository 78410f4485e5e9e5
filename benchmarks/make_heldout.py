"""Generate the benchmark clips that are not in samples/ into benchmarks/dev/ and benchmarks/heldout/.

    python benchmarks/make_heldout.py

Two groups, with different text, voices, instruments, melodies and
random-patch seeds from samples/ and from each other:

- ``dev/``: speech (two espeak-ng voices), two fluidsynth instruments and
  three clips of random codebook patches made by the project's OPL3 writer.
  These were listened to and measured while the model method's settings
  (pursuit margins, option switching) were chosen, so they are development
  clips, not a held-out test.
- ``heldout/``: the same kinds of clip made afresh (new sentences and
  voices, new instruments and tunes, new seeds) after those settings were
  frozen.  Nothing was trained or tuned on them.
"""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "samples"))
import make_samples as M  # noqa: E402

DEV = Path(__file__).resolve().parent / "dev"
HELDOUT = Path(__file__).resolve().parent / "heldout"


def dev(tmp: Path, out: Path) -> None:
    M.speech(tmp, out, name="speech_a.wav", voice="en-us",
             text="Please convert this sentence into frequency modulation.")
    M.speech(tmp, out, name="speech_b.wav", voice="de",
             text="Der Klang eines alten Soundchips ist unverwechselbar.")
    M.melody(tmp, out, name="strings.wav", program=48, notes=(55, 59, 62, 67, 62, 59, 55, 50))
    M.melody(tmp, out, name="trumpet.wav", program=56, notes=(67, 69, 71, 74, 72, 71, 69, 67))
    for seed in (11, 12, 13):
        M.opl_patches(tmp, out, name=f"opl_random_{seed}", seed=seed)


def heldout(tmp: Path, out: Path) -> None:
    M.speech(tmp, out, name="speech_gb.wav", voice="en-gb-x-rp",
             text="Twelve grey ships sailed quietly past the harbour lights at midnight.")
    M.speech(tmp, out, name="speech_es.wav", voice="es",
             text="La musica de los videojuegos antiguos tiene un encanto especial.")
    M.melody(tmp, out, name="flute.wav", program=73, notes=(72, 74, 76, 79, 81, 79, 76, 74))
    M.melody(tmp, out, name="guitar.wav", program=24, notes=(52, 55, 59, 64, 59, 55, 57, 60))
    M.melody(tmp, out, name="organ.wav", program=19, notes=(48, 55, 60, 64, 67, 64, 60, 55))
    for seed in (21, 22, 23):
        M.opl_patches(tmp, out, name=f"opl_random_{seed}", seed=seed)


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        for out, make in ((DEV, dev), (HELDOUT, heldout)):
            out.mkdir(exist_ok=True)
            make(Path(d), out)
            for vgm in out.glob("*.vgm"):
                vgm.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
