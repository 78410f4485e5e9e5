"""Generate the held-out benchmark clips (never used for training or tuning) into benchmarks/heldout/.

    python benchmarks/make_heldout.py

Different text, voice, instruments, melodies and random-patch seeds from
samples/: speech (two espeak-ng voices), two fluidsynth instruments, and
three clips of random codebook patches made by the project's OPL3 writer.
"""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "samples"))
import make_samples as M  # noqa: E402

OUT = Path(__file__).resolve().parent / "heldout"


def main() -> int:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        M.speech(tmp, OUT, name="speech_a.wav", voice="en-us",
                 text="Please convert this sentence into frequency modulation.")
        M.speech(tmp, OUT, name="speech_b.wav", voice="de",
                 text="Der Klang eines alten Soundchips ist unverwechselbar.")
        M.melody(tmp, OUT, name="strings.wav", program=48, notes=(55, 59, 62, 67, 62, 59, 55, 50))
        M.melody(tmp, OUT, name="trumpet.wav", program=56, notes=(67, 69, 71, 74, 72, 71, 69, 67))
        for seed in (11, 12, 13):
            M.opl_patches(tmp, OUT, name=f"opl_random_{seed}", seed=seed)
    for vgm in OUT.glob("*.vgm"):
        vgm.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
