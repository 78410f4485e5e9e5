"""Benchmarks: quality and speed per method and clip, emulator speed, memory.

    python benchmarks/run.py quality [--player emulator|adplay] [--clips DIR ...] [--model PATH] [--substeps N]
    python benchmarks/run.py speed [--model PATH] [--substeps N]   # x real time of each method on a 60 s clip
    python benchmarks/run.py voices          # batch voice renders per second (one core)
    python benchmarks/run.py render          # x real time of `wav2vgm render` (the chip emulator)
    python benchmarks/run.py memory          # peak memory converting 1, 20 and 60 minutes, rendering 1 and 10
    python benchmarks/run.py floor           # random-patch clips: their exact patches at other phases, and through our writer
    python benchmarks/run.py stereo          # per-side distances of stereo mixes, --mono / --stereo / --split-sides
    python benchmarks/run.py sides --player adplay   # the clips' renders: mono mix against each side
    python benchmarks/run.py startup         # whole-process wall time of convert/score/render on 3 s inputs
    python benchmarks/run.py bands --player adplay   # band-limited noise with and without the band timbres
    python benchmarks/run.py queue --player adplay   # the write governor on speech: on and off, updates 60 and 40 samples apart
    python benchmarks/run.py valleys --player adplay # render minus the voices' predicted spectrum, by level
    python benchmarks/run.py vibrato --player adplay # vibrato: pursuit voices kept off moving partials, or not
    python benchmarks/run.py tones --player adplay   # clean synthetic tones: levels between TL steps, or not
    python benchmarks/run.py close --player adplay   # partials closer than the analysis window resolves
    python benchmarks/run.py glides --player adplay  # partials whose pitch moves fast: glides, sweeps
    python benchmarks/run.py stairs          # levels in ramps instead of TL steps (an emulator oracle)
    python benchmarks/run.py all

Figures go to stdout as Markdown tables; the README and the model card quote them.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# one BLAS thread, as `wav2vgm` itself asks (before numpy loads): the speed figures are for
# one core, and _one_core pins every thread, which spinning BLAS threads would then slow
from wav2vgm.threads import one_blas_thread  # noqa: E402

one_blas_thread()

import numpy as np  # noqa: E402

from wav2vgm.audio import AUDIO_SUFFIXES, load_audio, write_wav  # noqa: E402
from wav2vgm.batch import convert_file, keep_freed_memory  # noqa: E402
from wav2vgm.convert import ConvertOptions  # noqa: E402
from wav2vgm.quality import score_vgm  # noqa: E402

METHODS = ("sines", "model")
CORPUS = ROOT.parent / "shared" / "corpus"
DEFAULT_DIRS = (ROOT / "samples", CORPUS, ROOT / "benchmarks" / "dev",
                ROOT / "benchmarks" / "heldout")


def clips(dirs) -> list[Path]:
    out = []
    for d in dirs:
        d = Path(d)
        if d.is_dir():
            out += sorted(p for p in d.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    return out


def convert_timed(src: Path, dst: Path, method: str, *, repeats: int = 1,
                  quality: str = "balanced", model_path: str | None = None,
                  frame_rate_hz: float | None = None, substeps: int | None = None) -> float:
    """Median seconds of ``repeats`` conversions; ``model_path``: another ONNX model;
    ``substeps``: another --substeps than the default.  The process's memory allocator is
    set up as ``wav2vgm convert`` sets up its own (:func:`~wav2vgm.batch.keep_freed_memory`)."""
    keep_freed_memory()
    more = {} if substeps is None else {"substeps": substeps}
    options = ConvertOptions(method=method, quality=quality, frame_rate_hz=frame_rate_hz,
                             model_path=model_path if method == "model" else None, **more)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        convert_file(str(src), str(dst), options)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


GROUPS = {"samples": "samples", "corpus": "corpus (real OPL music)",
          "dev": "dev (tuned on)", "heldout": "held out"}


def quality(dirs, player: str, model_path: str | None = None,
            quality_name: str = "balanced", substeps: int | None = None) -> list[list[str]]:
    """Per clip, both methods' distance and speed (the model method at ``quality_name``),
    and the means: over all clips and over the clips the settings were tuned on."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips(dirs):
            audio, rate = load_audio(str(clip))
            seconds = audio.size / rate
            row = [GROUPS.get(clip.parent.name, clip.parent.name), clip.name, f"{seconds:.1f}"]
            dist = {}
            for method in METHODS:
                out = Path(tmp) / f"{clip.stem}.{method}.vgm"
                t = convert_timed(clip, out, method, repeats=3, model_path=model_path,
                                  quality=quality_name, substeps=substeps)
                d = score_vgm(str(clip), str(out), player=player).distance_db
                dist[method] = d
                row += [f"{d:.2f}", f"{seconds / t:.0f}x"]
            row.append(f"{100 * (1 - dist['model'] / dist['sines']):+.0f}%")
            print(" | ".join(row), file=sys.stderr, flush=True)
            rows.append(row + [dist])                 # the unrounded distances, for the means
    print(f"\nlog-mel distance (dB, lower is better; rendered by {player}; model method "
          f"at --quality {quality_name}"
          f"{'' if substeps is None else f'; --substeps {substeps}'}) and conversion speed\n")
    print(quality_table(rows))
    print("\n" + quality_means(rows))
    return rows


def quality_means(rows) -> str:
    """The mean distances of a quality table: all clips, and those tuned on (not held out)."""
    def mean(method, keep=lambda r: True):
        v = [r[8][method] for r in rows if keep(r)]
        return sum(v) / len(v) if v else float("nan")
    tuned = lambda r: r[0] != GROUPS["heldout"]  # noqa: E731
    return (f"Means over the {len(rows)} clips: model {mean('model'):.3f} dB, sines "
            f"{mean('sines'):.3f} dB; on the {sum(map(tuned, rows))} clips tuned on (not held "
            f"out): model {mean('model', tuned):.3f}, sines {mean('sines', tuned):.3f}.")


def quality_table(rows) -> str:
    lines = ["| group | clip | s | sines dB | sines speed | model dB | model speed | model below sines |",
             "|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r[:8]) + " |" for r in rows]
    return "\n".join(lines)


def card(player: str) -> None:
    """Write models/README.md from models/training_log.json and a fresh quality table."""
    import json
    log = json.loads((ROOT / "models" / "training_log.json").read_text())
    if not all((ROOT / "benchmarks" / g).is_dir() for g in ("dev", "heldout")):
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_heldout.py")], check=True)
    rows = quality([str(d) for d in DEFAULT_DIRS], player)
    last = log["history"][-1]
    cfg = log["config"]
    from wav2vgm.methods.codebook import BAND_TLS, N_NETWORK_TIMBRES
    from wav2vgm.methods.pursuit import ATOMS_FILE
    atoms_kb = (ROOT / "models" / ATOMS_FILE).stat().st_size / 1024
    text = CARD.format(n_timbres=N_NETWORK_TIMBRES, n_bands=len(BAND_TLS),
        band_tls="/".join(str(t) for t in BAND_TLS),
        n_params=log["n_params"], onnx_kb=log["onnx_bytes"] / 1024, atoms_kb=atoms_kb,
        total_min=log["total_seconds"] / 60, data_s=log["data_seconds"],
        hardware=log["hardware"], n_train=cfg["n_train"], n_val=cfg["n_val"],
        epochs=cfg["epochs"], seed=cfg["seed"], width=cfg["model"]["width"],
        dilations=cfg["model"]["dilations"], prior=cfg["prior"],
        precision=last["val_precision"], recall=last["val_recall"],
        accuracy=last["val_timbre_accuracy"], level_db=last["val_level_db"],
        player=player, table=quality_table(rows) + "\n\n" + quality_means(rows), date=time.strftime("%Y-%m-%d"))
    (ROOT / "models" / "README.md").write_text(text)
    print(f"wrote {ROOT / 'models' / 'README.md'}", file=sys.stderr)


CARD = """# Model card: the wav2vgm inverse model (`models/inverse.onnx`)

The default conversion method (`wav2vgm convert`, `--method model`).  Two
shipped files: `inverse.onnx`, a network that looks at one analysis frame's
spectrum and proposes OPL3 voices, and `atoms.npz`, the mel spectra of the
{n_timbres} codebook timbres and {n_bands} band timbres as the emulator renders them,
which the converter uses to judge every proposal by how it sounds.

## What the network predicts
For every semitone bin of a frame: whether a voice's loudest partial is
there, which of the {n_timbres} codebook timbres it is
(`wav2vgm/methods/codebook.py`: sine, the 8 waveforms, FM at ratios
0.5/1/2/3/4 and several brightnesses, feedback timbres, and noise: a
modulator at full level with feedback 7 driving the carrier, whose TL sets
the loudness, so the noise keeps its spectrum at every level -- an operator
with feedback 7 sounding on its own stops being noise below about TL 12;
each a fixed setting of the discrete register fields MULT, WS, FB and CNT
and the modulator TL), and how loud.  A set of detections, not a register
vector, so voice order never matters, and timbres are classes.

## How the converter uses it (judged by sound)
Per block of frames (`wav2vgm/methods/model.py`, `pursuit.py`):
1. the network's most probable voices, each pitch refined on the spectrum
   and offered with its three most probable timbres (the network names the
   right one on 63% of its validation frames; the pursuit judges by sound);
2. the sine tracker (the `sines` method) plays the strongest partials on 16
   channels, the loudest of each mel band first (and on their first
   operators partials in bands no channel plays first), each moved towards
   its mel band's power (at most 6 dB: a peak
   shows one partial, the band also holds what no channel plays);
3. a greedy pursuit on the log-mel error fills the other 2 channels: the
   network's voices, the frame's peaks as sines and as sine pairs (one
   channel's two operators), feedback noise (for breath and the faint
   air above the partials the tracker plays) and the {n_bands} band timbres at
   6 centres from 2.1 to 12 kHz (half an octave apart; the carrier at MULT
   15, the modulator at MULT 0.5 with TL {band_tls}: a comb of partials 0.5x
   the base pitch apart, which in the mel bands is noise limited to a band
   whose width the modulator's TL sets -- what fricatives and cymbals need
   and white feedback noise cannot give; the network does not predict them;
   with no measured level, these are also tried at levels fitted to the
   residual's power in their own bands, those within 5 dB of their loudest)
   are candidates, each candidate's spectrum comes
   from the emulator-rendered atoms, and the voice that most reduces the
   error against the input (given what the tracker already plays) is added
   until none helps (each candidate judged on four evenly spaced frames of
   its stretch, first at the level fitted at its strongest band, then the
   10 most promising at all their trial levels, the chosen one's level
   fitted on every frame); one voice set
   per stretch of steady sound (split where
   the log-mel spectrum moves more than 2.25 dB per band from the stretch's
   mean -- an onset, a chord change, a new vowel -- and at most 0.5 s
   long), levels per frame, steadied by a running median over 0.15 s
   within the stretch (a level fitted frame by frame jumps between the
   trial gains as partials beat in the judged band); no pitched candidate
   lies within 100 cents of a tracked partial that glides (vibrato, a
   sweep: 20 cents or more within 50 ms, or the loudest partial gliding
   from channel to channel), which a voice holding its stretch's pitch
   would beat against (`python benchmarks/run.py vibrato --player adplay`:
   a vibrato tone 3.86 -> 1.55 dB, 8 instruments with vibrato 2.449 ->
   2.409), and a chosen voice rests on the frames where its loudest
   partial comes that near one (`python benchmarks/run.py glides --player
   adplay`: a +-200 Hz vibrato 2.94 -> 2.03 dB, 8 notes joined by glides
   3.90 -> 3.23); a pursuit sine on the pitch of a steady
   tracked partial (within 30 cents) would sound with it at a phase the
   key-ons fix, not at the summed power the pursuit planned with, so its
   power goes to the tracked operator and its channel rests
   (`python benchmarks/run.py tones --player adplay`: a 5 Hz tremolo 4.07
   -> 2.36 dB, `sines` 2.30; the 8 tones 1.882 -> 1.637);
4. voices keep their channel while the same timbre continues (key held,
   F-number and TL change); a new timbre only takes a silent channel;
5. (`--quality best` only) per half second, this mix is compared (log-mel
   error) with the sine tracker alone on 18 channels, and the closer one
   plays, with 0.5 dB hysteresis (none before the first half second); a
   channel whose timbre changes at a switch rests one frame instead of
   changing patch under a held key.  `balanced` compared them too until
   the comparison was found to keep the sines on none of the 15 clips
   tuned on (flute, held out, all the time: 1.796 dB with it, 1.813
   without), for 15-20% of its time;
6. (for every method) one global gain sets the levels -- where a lower
   gain is predicted to sound closer (a note decaying over more than the
   47 dB of TL; clean tones whose loudest partials would clip at TL 0),
   judged on the atoms, it is taken; below TL 63 key scaling (KSL) takes
   quiet operators up to 42 dB further down, and its quarter and half
   depths place levels between TL steps -- and each frame's registers are
   written up to 12 times (`--substeps`; updates at least 60 VGM samples
   apart: 12 a frame at 60 frames/s, 8 at 90, 6 at 120), held notes gliding
   in level and pitch towards the neighbouring frames, channel by channel
   (players apply writes about 2 samples apart, so a channel's MULT and
   F-number writes must be adjacent), within what the player's write
   queue drains between updates (where they would not fit, the least
   important level changes go one update later or not at all); the
   updates before an onset, which the frame's window heard ahead of
   time, are quietened to the input's power there
   (at most 15 dB) and those of the attack after them raised to it (at
   most 14 dB, for 20 ms); notes end with release rate 11 (about 40 ms to
   silence) so key-offs do not click.

`--quality fast|balanced|best` trades the pursuit's effort (how much
change starts a new voice set: 2.5, 2.25 or 2 dB) and the frame rate for
speed.  `balanced` and `best`
look at the input's first 10 s (for inputs over a minute, three 4 s
stretches spread over it): where the sound changes more than 10 times
a second (steady stretches as the pursuit cuts them) they analyse 90 and
120 frames per second instead of 60 -- speech and busy music gain, steady
sound loses (speech.wav 3.71 dB at 60, 3.50 at 90; opl_patches.wav 2.55
at 60, 2.65 at 90; choosing the rate took the 23-clip mean from 2.495 to
2.420 dB at `balanced`, before the two writer changes in step 6).  The
table's means are `balanced`'s; `python benchmarks/run.py quality --player
adplay --quality best` (and `fast`) give the others: `best` 1.986 dB,
`fast` 2.059 (always 60 frames per second, a new voice set at 2.5 dB).
On 60 s of speech and OPL music `balanced` takes 1.1-1.25x the time and
1.1x the file size it would at 60 frames per second, `best` 1.5-1.9x and 1.2x
(`python benchmarks/run.py speed`, three runs on 2026-12-04 at 20:04-20:12
UTC).  An older, wider search
(44 peaks, 1.5 dB, 10 candidates) scored no better before key scaling:
2.540 at 90 Hz in twice the time, against 2.537.  In noise the per-band
levels jitter by about 2 dB from frame to frame, so `balanced` starts a
new voice set at 2.25 dB rather than 2 (mean 2.495 against 2.496 dB at 60
frames per second, in less time on noisy input).

Levels glide between frames (the register updates within each frame) wherever
an operator sounds in both, even where the sine tracker moves a held
channel to another partial or partner: each TL change is an instant step
in the waveform, a click that grows with the step, so a jump of several
steps costs more than single steps (`methods/base.py: subdivide`).  That
took the mean over the 23 clips from 3.12 to 2.96 dB (`sines` 3.72 -> 3.58).

## Data
Generated by the project's own emulator (`wav2vgm/opl3/voices.py`) from a
prior of plausible settings, every run from seed {seed}:
{n_train} training and {n_val} validation frames, each a mixture of 1-8
voices: codebook timbres (sine weighted x4), base pitches log-uniform over
40 Hz-4 kHz, levels within 36 dB of the loudest voice, random start phases,
mixed, resampled to 44.1 kHz and analysed by the converter's own spectrum
code (`wav2vgm/spectrum.py`, `methods/features.py`; each frame's DC removed
first, as for the input).  Prior: `{prior}`.

## Architecture and loss
1-D convolutional network over 112 semitone bins (27.5 Hz-16.7 kHz): a
5-tap input convolution, residual dilated convolutions (width {width},
dilations {dilations}), a 1x1 head; {n_params} parameters.  Convolution in
log frequency makes it pitch-equivariant.  Loss: binary cross-entropy on
"a voice's loudest partial is in this bin", cross-entropy on the timbre
class and L1 on the level (dB re the frame peak) where a voice is.  No
parameter vector is regressed.

A narrower network, width 32
(`python -m wav2vgm.training.train --width 32 --out-dir DIR --no-card`, then
`python benchmarks/run.py quality --player adplay --model DIR/inverse.onnx`):
22943 parameters, 14 minutes of
training, validation precision 0.58, recall 0.67, timbre accuracy 0.58,
level error 3.83 dB; over the 23 clips the same 2.51 dB mean as width 48,
but worse on the random-patch clips, which the issue asks to be under 2 dB
(opl_random_11 1.85 -> 1.93 dB, _21 2.05 -> 2.15, _22 2.07 -> 2.13,
_23 2.13 -> 2.05), for about 0.1 s less network time on the 60 s clip
(one core, measured 2026-12-03).  A wider one, width 64 (the same
commands with `--width 64`): 88863 parameters, 30 minutes of training,
validation precision 0.65, recall 0.72, timbre accuracy 0.65, level
error 3.25 dB; over the 23 clips 2.320 dB against 2.314 (opl_random_13
2.73 -> 2.61, speech_a 3.57 -> 3.49, but speech 3.23 -> 3.33, speech_es
3.39 -> 3.49, doofus 2.87 -> 2.94; held-out clips 2.285 against 2.263).
Width 48 stays.

## Training
`pip install '.[train]' && python -m wav2vgm.training.train` regenerates the
data, trains ({epochs} epochs, AdamW, one-cycle schedule, fixed seed),
exports `models/inverse.onnx` with its metadata (schema, feature settings,
timbre names; the runtime refuses a mismatch), renders `models/atoms.npz`
and rewrites this card.  Measured: {total_min:.1f} minutes in all ({data_s} s
of it data generation) on {hardware}.  ONNX size {onnx_kb:.0f} KB; atoms
{atoms_kb:.0f} KB.

Validation (synthetic frames): detection precision {precision:.2f}, recall
{recall:.2f} (within one semitone), timbre accuracy {accuracy:.2f}, level
error {level_db:.2f} dB.  The pursuit, not the raw network output, decides
what plays: a wrong timbre guess is simply not chosen.

The command is deterministic in one environment: two runs write
byte-identical files.  Another machine or a rebuilt environment gives
another network of the same quality rather than the same bytes: retrained
on 2026-12-05 in a rebuilt environment (the same torch 2.13.0 CPU build;
the generated training set hashes the same as at the shipped network's
commit), the first epoch's loss differed in the fifth digit, which the
training kernels' float rounding explains and training amplifies, and the
weights differ; validation precision 0.62, recall 0.70, timbre accuracy
0.63, level error 3.46 dB; over the 23 clips `model` 2.069 dB against the
shipped network's 2.065 (15 tuned on 2.083 against 2.076; the same command
with `--out-dir DIR --no-card`, then `python benchmarks/run.py quality
--player adplay --model DIR/inverse.onnx`), so the shipped one stays.  With
30 epochs instead of 20 (validation timbre accuracy 0.64, level error 3.32
dB): 2.074, the 15 tuned on 2.084.  (Those comparisons were made before the
tracker kept gliding partials on their channels, later that day.)

## Quality
Log-mel distance in dB (lower is better) between each clip and its VGM as
rendered by {player}, conversion speed (x real time, one process, median of
3, on the machine that ran the command, on {date}; speeds on a shared virtual
machine vary by up to 2x from hour to hour), and how far the model method's
distance is below the sines method's.
Groups: `samples/`; `../shared/corpus/` (real OPL music); `benchmarks/dev/`
(speech, instruments and random-patch clips made by
`benchmarks/make_heldout.py`, which were listened to and measured while the
pursuit margins and option switching were chosen, as were samples/ and the
corpus); `benchmarks/heldout/` (made afresh by the same script after those
settings were frozen: new sentences, voices, instruments and seeds; nothing
was trained or tuned on them; they were measured before and after one later
bug fix, which was found and checked on a dev clip, and with the rest while
the loudness rule's two constants, `OVERDRIVE_DB` and `PLAYED_HEADROOM` in
`wav2vgm/methods/loudness.py`, were chosen from a few tried values).  The `opl_random_*` and `opl_patches` clips
are the project's own OPL3 writer playing random codebook patches, so a
perfect converter could reproduce them exactly (they follow the codebook: when
its noise timbre changed to the carrier-driven form, the random-patch clips of
`benchmarks/` were made afresh by the same script and seeds).  Reproduce with
`python benchmarks/make_heldout.py && python benchmarks/run.py quality --player {player}`.

{table}

## Limits
- Where plain sines already sound best (clean harmonic tones, sparse OPL
  music) the model method, whose mix leaves 16 of the 18 channels to the
  sine tracker, scores about as `sines` does: guitar 10%, melody 4%,
  trumpet 0.2% below it, flute 2% above it (1.77 against 1.74 dB).
- Speech is 18-27% below `sines` (2.69-2.90 dB; speech_a 26.6%, speech_b
  24.8%, speech_gb 24.4%, speech 23.7%, speech_es 17.9%; each was 25-31%
  before the tracker chose its partials and partners by mel band, which
  `sines` gains more from on speech: speech 3.86 -> 3.53 dB against the
  model's 2.78 -> 2.69); the band timbres
  for fricatives and the changes that came with them took the five speech
  clips 0.3-0.6 dB closer, and passing an operator's jump to another
  partial nearer the quieter level (`model.JUMP_SHARE`), notes fading
  before their key-off (`base.END_FADE_DB`) and a lower onset threshold
  (`base.ONSET_DROP_DB`) another 0.07-0.14 dB.
  The voiced frames are most of what is left, and not the choice of
  voices: in the cells 40-60 dB under their frame's loudest mel band, speech_a's render is
  4.8 dB louder than the atoms of its voices predict (opl_random_13 2.9,
  chord 1.4), while three of its frames played unchanged for a second
  render within 1 dB of the prediction there (`python benchmarks/run.py
  valleys --player adplay`).  The excess comes from what changes between
  register updates: every TL change is a step in the waveform, and 0.75 dB
  is the finest step TL has.
- On random-patch clips it reaches 1.78-2.12 dB (under 2 dB on 5 of 6:
  opl_random_11 1.83, _12 1.85, _21 1.93, _22 1.78 and _23 1.79; _13 at
  2.12; opl_patches.wav in samples/, made the same way, 2.08).  Their chip
  output carries a large DC offset (one-sided waveforms), whose spectral
  side lobes the analysis took for a 54 Hz partial until frames lost their
  DC before the spectrum (opl_random_13 2.55 -> 2.22 dB, opl_patches 2.41
  -> 2.29).
  Exact reproduction is
  possible only with the clip's own phases: the clip's exact patches, pitches
  and levels, keyed on 20-400 samples off their times (other relative phases,
  so overlapping partials and the leakage between them add differently),
  score 1.1-1.7 dB (`python benchmarks/run.py floor --player adplay`), so
  about 1.5 dB is the floor for any converter that does not match phases.
  The converter's own writer is not what stands in the way: given each
  clip's exact voices (a voice table built from the patches, every chord
  keyed afresh) it scores 0.9-1.2 dB (the same command's last column; a
  chord's voices key on together there, as in the clip, so their relative
  phases match).
  Recognising patches by their partials (a detected timbre whose partials
  all show at their levels, within 1.5 dB on average; the sine tracker on
  the peaks left) named a third to a half of the voices of opl_random_11,
  13 and 21 and scored 2.514-2.531 dB over the 23 clips: where voices
  overlap in pitch their partials beat, which the tracker follows frame by
  frame and fixed voices at other phases do not.  The analysis is: only 2
  channels take codebook timbres (1 or 3 measured worse: 2.585 / 2.546
  against 2.512 dB over the 23 clips, before the noise candidate), the sine tracker plays FM voices' partials one by one
  on the others, and voices are chosen per stretch of steady spectrum, not
  from the notes' envelopes.  Offered the clips' true voices as candidates,
  the default scores the same; the pursuit alone on all 18 channels, with
  them and two passes that swap each chosen voice for a better one, reaches
  1.95-2.46 dB on the dev clips and opl_patches (measured before key
  scaling, as are the wormintr figures below), but with the network's
  candidates (the true pitch among them for 74% of the voices, pitch and
  timbre for 61%) it does not beat the mix, and the atoms' comparison
  favours it where it sounds worse (wormintr: predicted 1.25 against 1.52
  dB for sines; offered as a third option, it took wormintr from 1.81 to
  2.58 dB).  Model voices first (3 pursuit voices on the whole spectrum,
  the tracker on the 15 channels left playing the peaks those voices do
  not cover) found the true patches of several chords but, offered as a
  third option, was almost never chosen, and forced it scored 2.65-3.13 dB
  on the random-patch clips (2026-12-03): the greedy pursuit on the whole
  spectrum takes voices whose extra partials the tracker would have done
  without, and the atoms predict even the true voices' sound 1-2.4 dB per
  band off (the pitch grid and the phases of overlapping partials).
  Analysed on each chord's middle frame, the network names the pitch and,
  among its three most probable, the timbre of 23 of the 24 voices of
  opl_patches.wav and of opl_random_13 (2026-12-05), yet the pursuit picks
  none of them there: the tracker already plays their partials, and its two
  channels go to what the tracker leaves (faint high partials, band and
  noise timbres).  Claiming a detected voice whose strong partials (within
  25 dB of its loudest, at least 3) match the frame's peaks within 25 cents
  and 3 dB on average, its peaks taken from the tracker: in the pursuit's
  two channels, the chords it named played closer (opl_patches' first chord
  about 1 dB per band closer) but the others lost the pursuit's filler of
  the top bands (the 11 OPL clips 2.88 dB against 1.92); on two channels of
  their own (the tracker on 14), instruments were claimed too (the 23 clips
  2.80 dB, trumpet 2.07 -> 5.05), and within 1 dB over at least 5 partials
  the 23 clips scored 2.22 (the tracker's two lost channels; opl_random_13
  -0.05 dB).
- About 1.4-1.7x slower than `sines` on the steady speed clip and 2.6-3.2x on
  busy sound (`python benchmarks/run.py speed`, three runs on 2026-12-04 at 20:04-20:12
  UTC); the network runs only on each
  segment's reference frame and is a small part of that.
- Both methods share the sine tracker's limits: two partials closer than
  about 45 Hz show as one peak whose level beats (`python benchmarks/run.py
  close --player adplay`), and of a fast glide only the loudest partial keeps
  its channel (`python benchmarks/run.py glides --player adplay`); the
  README's Limitations give the figures.
- And the writer's: a level moves in steps at register updates, each a
  faint click.  Played in ramps instead (an emulator oracle, `python
  benchmarks/run.py stairs`), the 23 clips would score about 1.98-2.00 dB
  for this method and 3.12 for `sines`; the chip ramps a level only down
  (its envelope generator's decay), which would gain at most 0.02 dB.
"""


@contextmanager
def _speed_clip():
    """A temporary folder holding the 60 s speed clip (a stepped melody with a little noise)."""
    rng = np.random.default_rng(0)
    t = np.arange(60 * 44100) / 44100
    f0 = 220 * 2 ** (np.floor(t * 2) % 12 / 12)
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / 44100) + 0.05 * rng.standard_normal(t.size)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clip60.wav"
        write_wav(str(src), x.astype(np.float32), 44100)
        yield Path(tmp), src


def _header(*columns: str) -> None:
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


@contextmanager
def _one_core():
    """Pin this process (and every thread it starts: BLAS, FFT workers) to one CPU, where the
    platform allows: the speed bar is set for one core."""
    if not hasattr(os, "sched_setaffinity"):
        yield "all cores (this platform cannot pin a process)"
        return
    cpus = os.sched_getaffinity(0)
    # every thread: those started at import (BLAS) keep their own affinity otherwise
    tasks = Path("/proc/self/task")
    threads = [int(t) for t in os.listdir(tasks)] if tasks.is_dir() else [0]
    for t in threads:
        os.sched_setaffinity(t, {min(cpus)})
    try:
        yield f"one core (CPU {min(cpus)})"
    finally:
        for t in threads:
            try:
                os.sched_setaffinity(t, cpus)
            except OSError:                                 # a thread that has ended
                pass


def speed(model_path: str | None = None, substeps: int | None = None) -> None:
    with _speed_clip() as (tmp, src), _one_core() as cores:
        print(f"pinned to {cores}" + ("" if substeps is None else f"; --substeps {substeps}"))
        _header("method", "60 s clip, median of 5", "x real time")
        for method, quality in (("sines", "balanced"), ("model", "fast"), ("model", "balanced"),
                                ("model", "best")):
            convert_timed(src, tmp / "warm.vgm", method, model_path=model_path)   # warm-up
            sec = convert_timed(src, tmp / "out.vgm", method, repeats=5, quality=quality,
                                model_path=model_path, substeps=substeps)
            name = method if method == "sines" else f"{method} --quality {quality}"
            print(f"| {name} | {sec:.2f} s | {60 / sec:.0f}x |", flush=True)
        # busier sound: the samples' speech and the corpus's OPL music end to end (more
        # voice sets per second; `balanced` analyses it at 90 frames/s)
        busy = _busy_clip(tmp)
        if busy is None:
            print("(no busy clip: samples/speech.wav or ../shared/corpus missing)")
            return
        _header("method", "60 s of speech and OPL music: median of 3, file size", "x real time")
        for method, quality, rate in (("sines", "balanced", None), ("model", "fast", None),
                                      ("model", "balanced", 60.0), ("model", "balanced", None),
                                      ("model", "best", None)):
            kw = dict(quality=quality, model_path=model_path, frame_rate_hz=rate, substeps=substeps)
            convert_timed(busy, tmp / "warm.vgm", method, **kw)
            sec = convert_timed(busy, tmp / "out.vgm", method, repeats=3, **kw)
            name = method if method == "sines" else f"{method} --quality {quality}"
            if rate:
                name += f" --frame-rate {rate:g}"
            size = (tmp / "out.vgm").stat().st_size / 1e6
            print(f"| {name} | {sec:.2f} s, {size:.2f} MB | {60 / sec:.0f}x |", flush=True)


def _busy_clip(tmp: Path) -> Path | None:
    """60 s of samples/speech.wav and the corpus snippets, end to end, repeated (mono, 44.1 kHz)."""
    from wav2vgm.audio import load_audio
    sources = [ROOT / "samples" / "speech.wav"] + (sorted(CORPUS.glob("*")) if CORPUS.is_dir() else [])
    parts = [load_audio(str(p), target_rate_hz=44100)[0] for p in sources
             if p.is_file() and p.suffix.lower() in (".wav", ".flac")]
    if not parts:
        return None
    x = np.concatenate(parts)
    x = np.tile(x, -(-60 * 44100 // x.size))[:60 * 44100]
    path = tmp / "busy60.wav"
    write_wav(str(path), x.astype(np.float32), 44100)
    return path


def render() -> None:
    """The emulator playing the speed clip's VGMs (player timing, resampled to 44.1 kHz)."""
    from wav2vgm.opl3.render import render_vgm
    from wav2vgm.vgm import read_vgm
    with _speed_clip() as (tmp, src):
        _header("VGM of the 60 s clip", "writes", "render time", "x real time")
        for method in METHODS:
            out = tmp / f"{method}.vgm"
            convert_file(str(src), str(out), ConvertOptions(method=method))
            vgm = read_vgm(str(out))
            sec = _time(lambda: render_vgm(vgm, rate_hz=44100))
            print(f"| {method} | {len(vgm.regs)} | {sec:.1f} s | {60 / sec:.1f}x |", flush=True)


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


def memory(methods=("model", "sines")) -> None:
    """Peak RSS of a fresh process converting 1, 20 and 60 minutes of audio, per method, and
    of one rendering (`wav2vgm render`) the `model` conversions of 1 and 10 minutes."""
    print("| audio | method | peak memory |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in (1, 20, 60):
            src = Path(tmp) / f"m{minutes}.flac"
            _long_clip(src, minutes)
            for method in methods:
                mb = peak_memory_mb(src, Path(tmp) / "o.vgm", method)
                print(f"| {minutes} min | {method} | {mb:.0f} MB |", flush=True)
            src.unlink()
        for minutes in (1, 10):
            src, vgm = Path(tmp) / f"r{minutes}.flac", Path(tmp) / f"r{minutes}.vgm"
            _long_clip(src, minutes)
            convert_file(str(src), str(vgm), ConvertOptions())
            mb = _peak_mb(f"from wav2vgm.cli import main; main(['render', {str(vgm)!r}, '-o', "
                          f"{str(Path(tmp) / 'r.wav')!r}, '-q'], standalone_mode=False)")
            print(f"| {minutes} min | `render` of its `model` VGM | {mb:.0f} MB |", flush=True)


def _peak_mb(code: str) -> float:
    """Peak RSS (MB) of a fresh Python process running ``code`` in the repository."""
    code += "; import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return int(out.stdout.split()[-1]) / 1024


def peak_memory_mb(src: Path, dst: Path, method: str) -> float:
    """Peak RSS (MB) of a fresh Python process converting ``src`` to ``dst``."""
    return _peak_mb("from wav2vgm.batch import convert_file, keep_freed_memory;"
                    "from wav2vgm.convert import ConvertOptions; keep_freed_memory();"
                    f"convert_file({str(src)!r}, {str(dst)!r}, ConvertOptions(method={method!r}))")


def batch(n_files: int = 20, seconds: int = 30, jobs: int = 2) -> None:
    """Throughput of ``wav2vgm convert FOLDER -o OUT --jobs 2`` on 20 files of 30 s."""
    import soundfile as sf
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i in range(n_files):
            t = np.arange(seconds * 44100) / 44100
            x = 0.2 * np.sin(2 * np.pi * 110 * 2 ** (i / 12) * t) + 0.02 * rng.standard_normal(t.size)
            sf.write(src / f"clip{i:02d}.wav", x.astype(np.float32), 44100)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "wav2vgm.cli", "convert", str(src), "-o",
                              str(Path(tmp) / "out"), "--jobs", str(jobs), "--quiet"],
                             cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        assert out.returncode == 0, out.stderr
        total = n_files * seconds
        print(f"| batch | {n_files} files x {seconds} s, --jobs {jobs} | {wall:.1f} s wall, "
              f"{total / wall:.1f}x real time, {n_files / wall * 60:.1f} files/min |")


def startup(repeats: int = 3) -> None:
    """Wall time of whole processes on short inputs: what a user waits for a short clip."""
    import soundfile as sf
    with tempfile.TemporaryDirectory() as tmp:
        s48 = Path(tmp) / "tone48k.wav"
        t = np.arange(3 * 48000) / 48000
        sf.write(s48, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 48000)
        chord = ROOT / "samples" / "chord.wav"
        out = Path(tmp) / "o.vgm"
        runs = (("convert samples/chord.wav (3 s, 44.1 kHz)", ["convert", str(chord), "-o", str(out), "-q"]),
                ("convert a 3 s 48 kHz tone", ["convert", str(s48), "-o", str(out), "-q"]),
                ("convert --method sines samples/chord.wav", ["convert", str(chord), "-o", str(out), "-q",
                                                             "--method", "sines"]),
                ("score samples/chord.wav (emulator)", ["score", str(chord), str(out)]),
                ("render (3 s)", ["render", str(out), "-o", str(Path(tmp) / "r.wav"), "-q"]))
        _header("command", f"wall, median of {repeats}")
        for name, args in runs:
            walls = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "wav2vgm.cli", *args], cwd=ROOT,
                                      capture_output=True, text=True)
                walls.append(time.perf_counter() - t0)
                assert done.returncode == 0, done.stderr
            print(f"| {name} | {statistics.median(walls):.2f} s |", flush=True)


FLOOR_CLIPS = (("samples", "opl_patches", 2026), ("dev", "opl_random_11", 11),
               ("dev", "opl_random_12", 12), ("dev", "opl_random_13", 13),
               ("heldout", "opl_random_21", 21), ("heldout", "opl_random_22", 22),
               ("heldout", "opl_random_23", 23))
FLOOR_JITTERS = (0, 20, 100, 400)


def exact_voices_vgm(wav: Path, clip_vgm: Path, chords, out: Path) -> Path:
    """The clip's own voices as a voice table, written by the converter's writer.

    Each analysis frame plays the chord the clip's VGM sounds at its centre
    (chord changes where the player keys them on); the frame before a
    change rests, as the clip keys off before it keys on the next chord.
    """
    from wav2vgm.audio import open_audio
    from wav2vgm.convert import analyse, write_voices
    from wav2vgm.methods.base import VoiceFrames
    from wav2vgm.methods.model import fill_voices
    from wav2vgm.opl3 import registers as R
    from wav2vgm.opl3.render import player_write_times
    from wav2vgm.vgm import VgmWriter, read_vgm

    options = ConvertOptions()
    with open_audio(str(wav)) as stream:
        found = analyse(stream, options)              # frame centres and the level reference
        n_samples = stream.n_samples
    clip = read_vgm(str(clip_vgm))
    t, _ = player_write_times(clip.times, clip.end_time, rate_hz=R.NATIVE_RATE_INT,
                              wait_ends=clip.wait_ends)
    key_on = ((clip.regs & 0xF0) == 0xB0) & (clip.values & 0x20 > 0)
    starts_s = np.unique(t[key_on]) / R.NATIVE_RATE_INT              # one per chord
    centre_s = found.centres / 44100.0
    chord = np.searchsorted(starts_s, centre_s, side="right") - 1
    # the last frame before each change rests (its key goes off), so every chord keys on
    # afresh: a patch changed under a held key would play its operators at a random
    # relative phase (the clip keys off 40 samples before each chord)
    playing = (chord >= 0) & (np.append(chord[1:], chord[-1:]) == chord)
    now = np.array(chords, np.float64)[np.maximum(chord, 0)]          # (frames, voices, 3)
    on = playing[:, None]
    shape = (centre_s.size, options.voices)
    pad = lambda a, fill: np.pad(a, ((0, 0), (0, shape[1] - a.shape[1])),  # noqa: E731
                                 constant_values=fill)
    cls = pad(np.where(on, now[..., 0], -1).astype(np.int64), -1)
    f_hz = pad(np.where(on, now[..., 1], 0.0), 0.0)
    amp = pad(np.where(on, 10 ** (-R.TL_STEP_DB * now[..., 2] / 20), 0.0), 0.0)
    v = VoiceFrames.empty(*shape)
    fill_voices(v, cls, f_hz, amp, np.full(shape, -1), np.zeros(shape))
    found.voices = v
    with open(out, "wb") as f:
        writer = VgmWriter(f)
        write_voices(writer, found, options, n_samples=n_samples)
        writer.close()
    return out


def floor(player: str) -> None:
    """How close a converter that does not match phases can get on the random-patch clips.

    Each clip is re-made from its own patches, pitches and levels (exactly
    what a perfect converter would find), with every key-on delayed by a
    random 0..J samples: the same voices at other relative phases.  J = 0
    reproduces the clip; any J > 0 shows the distance that phase alone
    costs (overlapping partials and the leakage between them add with
    other phases).

    The last column plays the exact voices through the converter's own
    writer instead (:func:`exact_voices_vgm`): what the rest of the
    pipeline would score if the analysis found every voice.
    """
    sys.path.insert(0, str(ROOT / "samples"))
    import make_samples as M
    print("| clip | " + " | ".join(f"key-on jitter {j} samples" for j in FLOOR_JITTERS)
          + " | exact voices, converter's writer |")
    print("|---|" + "---|" * (len(FLOOR_JITTERS) + 1))
    with tempfile.TemporaryDirectory() as tmp:
        for group, name, seed in FLOOR_CLIPS:
            wav = ROOT / group / f"{name}.wav" if group == "samples" else \
                ROOT / "benchmarks" / group / f"{name}.wav"
            if not wav.exists():
                continue
            row = []
            for j in FLOOR_JITTERS:
                vgm = M.opl_patches(Path(tmp), Path(tmp), name=name, seed=seed, key_on_jitter=j,
                                    write_wav_file=False)
                row.append(f"{score_vgm(str(wav), str(vgm), player=player).distance_db:.2f}")
            vgm = M.opl_patches(Path(tmp), Path(tmp), name=name, seed=seed, write_wav_file=False)
            ours = exact_voices_vgm(wav, vgm, M.patch_chords(seed), Path(tmp) / "exact.vgm")
            row.append(f"{score_vgm(str(wav), str(ours), player=player).distance_db:.2f}")
            print(f"| {name} | " + " | ".join(row) + " |", flush=True)


def stereo(player: str) -> None:
    """Per-side log-mel distance of two stereo mixes of samples/, converted with --mono, --stereo
    and --split-sides.

    ``hard``: melody on the left only, chord on the right only.  ``mixed``:
    melody left only, chord in the middle, speech right of centre (8 dB).
    ``centre``: the chord alike on both sides.
    Each side of the VGM as ``player`` renders it is scored against that
    side of the mix; ``mono mix`` scores the mean of the two sides.
    """
    from wav2vgm import spectrum
    from wav2vgm.quality import render_for_score, side_distances

    a, b, c = (load_audio(str(ROOT / "samples" / f"{n}.wav"), target_rate_hz=44100)[0]
               for n in ("melody", "chord", "speech"))
    n = min(a.size, b.size, c.size)
    a, b, c = a[:n], b[:n], c[:n]
    mixes = {"hard": (a, 0.5 * b), "mixed": (a + 0.5 * b + 0.2 * c, 0.5 * b + 0.5 * c),
             "centre": (b, b)}
    print(f"| mix | option | left | right | mean of sides | mono mix |  (dB, {player})")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (left, right) in mixes.items():
            src = Path(tmp) / f"{name}.wav"
            write_wav(str(src), 0.8 * np.column_stack([left, right]).astype(np.float32), 44100)
            for option in ("--mono", "--stereo", "--split-sides"):
                out = Path(tmp) / f"{name}.vgm"
                convert_file(str(src), str(out), ConvertOptions(stereo=option != "--mono",
                                                                split_sides=option == "--split-sides"))
                y = render_for_score(str(out), player=player, stereo=True)
                d = [s.distance_db for s in side_distances(np.column_stack([left, right]),
                                                             y).values()]
                m = spectrum.logmel_distance((left + right) / 2, y.mean(axis=1), rate_hz=44100)
                print(f"| {name} | {option} | {d[0]:.2f} | {d[1]:.2f} | {(d[0] + d[1]) / 2:.2f} | "
                      f"{m.distance_db:.2f} |", flush=True)


def sides(player: str) -> None:
    """The benchmark clips (mono) converted with `model`: each side of the render scored
    against the input (``wav2vgm score --sides``), and the mono mix the yardstick scores.

    The Nuked core mixes the left output after updating slots 0-14 and the right after
    slots 0-32, so an operator in slots 0-14 or 33-35 reaches the right output one sample
    after the left (channels 0-5, operator 1 of 6-8, operator 2 of 15-17): the mean of the
    two sides passes it through ``|cos(pi f / 49716)|`` (-0.6 dB at 6 kHz, -2.8 dB at
    12 kHz), which neither side has.
    """
    from wav2vgm import spectrum
    from wav2vgm.quality import render_for_score, side_distances

    _header("group", "clip", "mono mix dB", "left dB", "right dB", "mean of sides dB")
    mono, each = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.vgm"
        for clip in clips(DEFAULT_DIRS):
            convert_file(str(clip), str(out), ConvertOptions())
            y = render_for_score(str(out), player=player, stereo=True)
            x = load_audio(str(clip), target_rate_hz=44100)[0]
            m = spectrum.logmel_distance(x, y.mean(axis=1), rate_hz=44100).distance_db
            d = [s.distance_db for s in side_distances(x, y).values()]
            mono.append(m)
            each.append(sum(d) / 2)
            print(f"| {clip.parent.name} | {clip.stem} | {m:.3f} | {d[0]:.3f} | {d[1]:.3f} | "
                  f"{each[-1]:.3f} |", flush=True)
    print(f"| all | mean of {len(mono)} | {np.mean(mono):.3f} | | | {np.mean(each):.3f} |")


def bands(player: str) -> None:
    """Band-limited noise (fricatives, cymbals) with and without the band timbres.

    Noise filtered to a band (6th-order Butterworth), steady or as hits (8 a second,
    18 ms decay), 2 s, converted by the model method with the band timbres offered at
    their centres and at none."""
    from scipy.signal import butter, sosfilt
    from wav2vgm.methods import model
    cases = (("steady", 3000, 7000), ("hits", 9000, 14000), ("hits", 3000, 7000),
             ("steady", 1000, 2500))
    print(f"| noise | band | no band timbres | band timbres |  (dB, {player})")
    print("|---|---|---|---|")
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as tmp:
        wav, vgm = Path(tmp) / "noise.wav", Path(tmp) / "noise.vgm"
        for kind, lo, hi in cases:
            sos = butter(6, [lo, hi], btype="bandpass", fs=44100, output="sos")
            x = sosfilt(sos, rng.standard_normal(2 * 44100))
            if kind == "hits":
                x *= np.exp(-(np.arange(x.size) % 5512) / 800.0)
            write_wav(str(wav), (0.5 * x / np.abs(x).max()).astype(np.float32), 44100)
            row = []
            for centres in ((), model.BAND_CENTRES_HZ):
                saved, model.BAND_CENTRES_HZ = model.BAND_CENTRES_HZ, centres
                try:
                    convert_file(str(wav), str(vgm), ConvertOptions(method="model"))
                finally:
                    model.BAND_CENTRES_HZ = saved
                row.append(f"{score_vgm(str(wav), str(vgm), player=player).distance_db:.2f}")
            print(f"| {kind} | {lo / 1000:g}-{hi / 1000:g} kHz | " + " | ".join(row) + " |", flush=True)


VIBRATO_PROGRAMS = ((40, "violin", (67, 71, 74, 72)), (42, "cello", (48, 52, 55, 53)),
                    (52, "choir", (60, 64, 67, 65)), (68, "oboe", (69, 72, 76, 74)),
                    (56, "trumpet", (62, 65, 69, 67)), (73, "flute", (74, 77, 81, 79)),
                    (71, "clarinet", (58, 62, 65, 63)), (65, "alto sax", (55, 58, 62, 60)))


def vibrato(player: str) -> None:
    """Sound whose pitch moves: the model method with and without keeping its pursuit voices
    off moving partials (``NEAR_MOVING_CENTS``), and the sines method.

    A synthetic tone (:func:`_tone_clips`: 440 Hz, 5 harmonics at 1/h, a 6 Hz vibrato of
    +-50 cents, 3 s) and, where fluidsynth and its General MIDI sound font are installed,
    eight instruments with the modulation wheel full up (4 notes of 1 s, the first 4 s)."""
    import shutil
    sys.path.insert(0, str(ROOT / "samples"))
    import make_samples
    from wav2vgm.methods import model
    _header("clip", "sines", "model, voices next to moving partials", "model")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tone = dict(_tone_clips())["5 harmonics, 6 Hz vibrato"]
        write_wav(str(tmp / "tone.wav"), tone, 44100)
        clips = [("synthetic tone", tmp / "tone.wav")]
        if shutil.which("fluidsynth") and Path(make_samples.SOUNDFONT).is_file():
            for program, name, notes in VIBRATO_PROGRAMS:
                make_samples.melody(tmp, tmp, name=f"{program}.wav", program=program, notes=notes,
                                    modulation=127, ticks=960)
                clips.append((name, tmp / f"{program}.wav"))
        else:
            print("vibrato: fluidsynth or its sound font is missing: the synthetic tone only",
                  file=sys.stderr)
        _settings_table(clips, tmp / "out.vgm", player, model, "NEAR_MOVING_CENTS",
                        (("sines", None), ("model", 0.0), ("model", None)))


def _settings_table(clips, vgm: Path, player: str, module, constant: str, settings) -> None:
    """One row per (name, wav path) of ``clips``: its distance converted with each of
    ``settings`` -- (method, value of ``module.constant``, None: as it is) -- and their means."""
    sums = np.zeros(len(settings))
    for name, wav in clips:
        row = []
        for method, value in settings:
            saved = getattr(module, constant)
            setattr(module, constant, saved if value is None else value)
            try:
                convert_file(str(wav), str(vgm), ConvertOptions(method=method))
            finally:
                setattr(module, constant, saved)
            row.append(score_vgm(str(wav), str(vgm), player=player).distance_db)
        sums += row
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |", flush=True)
    print(f"| mean of {len(clips)} | " + " | ".join(f"{v / len(clips):.3f}" for v in sums) + " |")


def _tone_clips() -> list[tuple[str, np.ndarray]]:
    """Clean synthetic tones, 3 s at 44.1 kHz: (name, samples)."""
    t = np.arange(3 * 44100) / 44100
    two_pi = 2 * np.pi
    harmonics = lambda phase, decay=None: sum(  # noqa: E731
        np.sin(h * phase) / h * (1.0 if decay is None else np.exp(-(2 + h) * decay))
        for h in range(1, 6))
    vibrato = two_pi * np.cumsum(440 * 2 ** (0.5 / 12 * np.sin(two_pi * 6 * t))) / 44100
    sweep = two_pi * np.cumsum(50 * 160 ** (t / t[-1])) / 44100
    kick = np.zeros_like(t)
    for start in range(0, t.size, 22050):                 # 6 kicks, each 160 -> 60 Hz in 0.3 s
        tt = t[:min(13230, t.size - start)]
        kick[start:start + tt.size] = np.sin(two_pi * np.cumsum(60 + 100 * np.exp(-30 * tt)) / 44100
                                             ) * np.exp(-15 * tt)
    pluck = np.zeros_like(t)
    for k, f_hz in enumerate((220.0, 277.2, 329.6, 440.0)):
        start = int(k * 0.7 * 44100)
        pluck[start:] += harmonics(two_pi * f_hz * t[:t.size - start], t[:t.size - start])
    clips = [("steady 440 Hz sine", np.sin(two_pi * 440 * t)),
             ("440 Hz sine, 17 dB/s decay", np.sin(two_pi * 440 * t) * np.exp(-2 * t)),
             ("5 decaying harmonics of 220 Hz", harmonics(two_pi * 220 * t, t)),
             ("440 Hz sine, 5 Hz tremolo", (1 + 0.5 * np.sin(two_pi * 5 * t)) * np.sin(two_pi * 440 * t)),
             ("5 harmonics, 6 Hz vibrato", harmonics(vibrato)),
             ("sine sweep 50 Hz - 8 kHz", np.sin(sweep)),
             ("4 overlapping plucks", pluck),
             ("kick drum: a sine dropping 160 -> 60 Hz", kick)]
    return [(name, (0.5 * x / np.abs(x).max()).astype(np.float32)) for name, x in clips]


def _synthetic_table(clips, player: str, module, constant: str, settings) -> None:
    """:func:`_settings_table` of synthetic ``clips`` ((name, 44.1 kHz samples)), written to
    WAV files first."""
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for k, (name, x) in enumerate(clips):
            paths.append((name, Path(d) / f"clip{k}.wav"))
            write_wav(str(paths[-1][1]), x, 44100)
        _settings_table(paths, Path(d) / "clip.vgm", player, module, constant, settings)


def tones(player: str) -> None:
    """Clean synthetic tones (:func:`_tone_clips`): the sines and model methods, and the model
    with operator 2's TL steps alone (no fill-in from a free operator 1,
    :func:`~wav2vgm.methods.base.helper_levels`)."""
    from wav2vgm.methods import base
    _header("tone", "sines", "model, TL steps alone", "model")
    _synthetic_table(_tone_clips(), player, base, "FILL_IN_LEVELS",
                     (("sines", None), ("model", False), ("model", None)))


def _close_clips() -> list[tuple[str, np.ndarray]]:
    """Partials closer than the analysis window resolves, 3 s at 44.1 kHz: (name, samples)."""
    t = np.arange(3 * 44100) / 44100
    two_pi = 2 * np.pi
    saw = lambda f_hz, n, phase=0.0: sum(np.sin(two_pi * f_hz * h * t + phase * h) / h  # noqa: E731
                                         for h in range(1, n + 1))
    clips = [(f"440 + {d} Hz sines", 0.3 * np.sin(two_pi * 440 * t)
              + 0.2 * np.sin(two_pi * (440 + d) * t + 1.0)) for d in (5, 15, 40, 80)]
    clips += [(f"two 220 Hz saws {c} cents apart", saw(220, 12) + saw(220 * 2 ** (c / 1200), 12, 0.7))
              for c in (5, 12, 25)]
    clips.append(("C-E-G chord of 6-harmonic saws",
                  sum(saw(f_hz, 6) for f_hz in (261.63, 329.63, 392.0))))
    return [(name, (0.5 * x / np.abs(x).max()).astype(np.float32)) for name, x in clips]


def _glide_clips() -> list[tuple[str, np.ndarray]]:
    """Partials whose pitch moves more than the tracker follows from frame to frame, 3 s at
    44.1 kHz: (name, samples)."""
    t = np.arange(3 * 44100) / 44100
    two_pi = 2 * np.pi
    # a melody of 8 notes, each reached by a 40 ms glide (a second harmonic 10 dB down)
    notes = np.repeat([220.0, 330.0, 262.0, 392.0, 294.0, 440.0, 349.0, 523.0], t.size // 8 + 1)[:t.size]
    k = int(0.04 * 44100)
    f_porta = np.exp(np.convolve(np.log(np.concatenate([np.full(k, notes[0]), notes,
                                                         np.full(k, notes[-1])])),
                                 np.ones(k) / k, mode="same")[k:-k])
    phase = two_pi * np.cumsum(f_porta) / 44100
    zaps = np.zeros_like(t)
    for start in range(0, t.size - 13230, 22050):        # 3 kHz -> 100 Hz in 0.3 s, twice a second
        tt = t[:13230]
        zaps[start:start + 13230] = np.sin(two_pi * np.cumsum(3000 * (100 / 3000) ** (tt / 0.3))
                                           / 44100) * np.exp(-3 * tt)
    clips = [("8 notes joined by 40 ms glides", np.sin(phase) + 0.3 * np.sin(2 * phase)),
             ("sweeps 3 kHz -> 100 Hz in 0.3 s", zaps),
             ("300 Hz sine, 3 Hz vibrato of +-200 Hz",
              np.sin(two_pi * np.cumsum(300 + 200 * np.sin(two_pi * 3 * t)) / 44100))]
    return [(name, (0.5 * x / np.abs(x).max()).astype(np.float32)) for name, x in clips]


def glides(player: str) -> None:
    """Fast glides (:func:`_glide_clips`): both methods.  A partial that moves more than
    70 cents (sines._TRACK_TOL_CENTS) from one frame to the next starts a new note on another channel each frame."""
    from wav2vgm.methods import base
    _header("clip", "sines", "model")
    _synthetic_table(_glide_clips(), player, base, "FILL_IN_LEVELS", (("sines", None), ("model", None)))


def close(player: str) -> None:
    """Partials closer together than the 46 ms analysis window resolves (:func:`_close_clips`):
    both methods.  Two such partials show as one peak whose level beats, which the
    tracker follows frame by frame."""
    from wav2vgm.methods import base
    _header("clip", "sines", "model")
    _synthetic_table(_close_clips(), player, base, "FILL_IN_LEVELS", (("sines", None), ("model", None)))


def queue(player: str) -> None:
    """What the write governor does (wav2vgm/opl3/queue.py), on speech and the busy speed clip.

    Each clip converted with updates at least 60 VGM samples apart (the
    default) and 40 apart (what AdPlug allows; 12 updates a frame at 90
    frames/s), with the governor and without it (the player's queue left to
    run late): writes, the level changes the governor dropped or moved, and
    the distance as ``player`` renders the VGM.
    """
    import math
    from wav2vgm import convert
    from wav2vgm.opl3.queue import WriteGovernor
    names = [ROOT / "samples" / "speech.wav"] + [
        ROOT / "benchmarks" / g / f"{n}.wav" for g, n in (("dev", "speech_a"), ("dev", "speech_b"),
                                                          ("heldout", "speech_es"),
                                                          ("heldout", "speech_gb"))]
    _header("clip", "updates apart (samples)", "writes", "level changes thinned",
            "dB governed", "dB without the governor")
    saved = convert.MIN_UPDATE_SAMPLES, convert.WriteGovernor
    with tempfile.TemporaryDirectory() as tmp:
        busy = _busy_clip(Path(tmp))
        for clip in [c for c in names if c.exists()] + ([busy] if busy else []):
            for spacing in (60, 40):
                row = []
                for governed in (True, False):
                    convert.MIN_UPDATE_SAMPLES = spacing
                    convert.WriteGovernor = WriteGovernor if governed else (
                        lambda: WriteGovernor(allowance=math.inf))
                    try:
                        out = Path(tmp) / "q.vgm"
                        stats = convert_file(str(clip), str(out), ConvertOptions())
                    finally:
                        convert.MIN_UPDATE_SAMPLES, convert.WriteGovernor = saved
                    if governed:
                        row += [str(stats["n_writes"]), str(stats["n_dropped"] + stats["n_delayed"])]
                    row.append(f"{score_vgm(str(clip), str(out), player=player).distance_db:.3f}")
                print(f"| {clip.stem} | {spacing} | " + " | ".join(row) + " |", flush=True)


VALLEY_BANDS_DB = ((-10, 0), (-20, -10), (-30, -20), (-40, -30), (-60, -40))


def _mel_at(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) mel power of mono 44.1 kHz ``x`` at the analysis frame ``centres``."""
    from wav2vgm.convert import FrameAnalyser
    from wav2vgm.methods.pursuit import mel_power
    fa = FrameAnalyser(centres, n_samples=x.size)
    return mel_power(np.concatenate([fa.push(x.astype(np.float32)), fa.push(None)]))


def _render_minus_prediction(rendered: np.ndarray, predicted: np.ndarray, reference: np.ndarray):
    """Mean dB of render minus prediction per VALLEY_BANDS_DB band of ``reference`` (dB re its
    frame's loudest band): the render is first moved by its median offset on the cells
    within 30 dB of the loudest (the players' level is not the analysis level)."""
    from wav2vgm.spectrum import db
    r, m, ref = db(rendered), db(predicted), db(reference)
    top = ref.max()
    r += np.median((m - r)[ref > top - 30])
    floor = top - 60
    r, m, ref = (np.maximum(a, floor) for a in (r, m, ref))
    cells = (ref > floor) | (r > floor)
    rel = ref - ref.max(axis=-1, keepdims=True)
    out = []
    for lo, hi in VALLEY_BANDS_DB:
        sel = cells & (rel >= lo) & (rel < hi)
        out.append(float(np.mean((r - m)[sel])) if sel.any() else float("nan"))
    return out


def valleys(player: str) -> None:
    """Where a conversion's render departs from what its voices' atoms predict, by how far
    under its frame's loudest band a cell of the input lies.

    ``conversion``: the whole clip as converted.  ``held still``: three of its
    frames (the loudest 5%, 25% and 50% of frames by predicted power), each
    played unchanged for a second through the same writer -- the same voices
    with nothing changing between updates (its cells placed by the prediction's own
    level, the input's being a moving frame).  Mean dB, render minus prediction.
    """
    from wav2vgm.audio import open_audio
    from wav2vgm.convert import Analysis, analyse, analysis_gain, frame_times, write_voices
    from wav2vgm.methods.base import VoiceFrames
    from wav2vgm.methods.loudness import voice_power
    from wav2vgm.quality import render_for_score
    from wav2vgm.vgm import VgmWriter
    names = [ROOT / "samples" / "speech.wav", ROOT / "benchmarks" / "dev" / "speech_a.wav",
             ROOT / "benchmarks" / "dev" / "opl_random_13.wav", ROOT / "samples" / "chord.wav"]
    bands = [f"{-hi}-{-lo} dB" for lo, hi in VALLEY_BANDS_DB]
    _header("clip", "voices", *[f"{b} under" for b in bands], "held still, 40-60 dB under")
    hold_frames = 90

    def play(found, n_samples, path):
        with open(path, "wb") as f:
            writer = VgmWriter(f)
            write_voices(writer, found, ConvertOptions(frame_rate_hz=found.frame_rate_hz),
                         n_samples=n_samples)
            writer.close()
        return render_for_score(str(path), player=player)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "v.vgm"
        for clip in [c for c in names if c.exists()]:
            with open_audio(str(clip)) as stream:
                found = analyse(stream, ConvertOptions())
                gain = analysis_gain(stream)
                n_samples = stream.n_samples
            x = load_audio(str(clip), target_rate_hz=44100)[0] * gain
            predicted = voice_power(found.voices)
            y = play(found, n_samples, out)
            whole = _render_minus_prediction(_mel_at(y, found.centres), predicted,
                                             _mel_at(x, found.centres))
            total = predicted.sum(axis=1)
            rank = np.argsort(-total)
            held = []
            for i in (rank[len(rank) // 20], rank[len(rank) // 4], rank[len(rank) // 2]):
                v = found.voices
                still = VoiceFrames(**{f: np.repeat(getattr(v, f)[i:i + 1], hold_frames, axis=0)
                                       for f in VoiceFrames.__dataclass_fields__ if f != "outputs"})
                hop = 44100 / found.frame_rate_hz
                centres = frame_times(int(hold_frames * hop), found.frame_rate_hz)
                y = play(Analysis(still, centres, found.level_power[:0], 1, found.frame_rate_hz),
                         int(hold_frames * hop), out)
                middle = _mel_at(y, centres)[hold_frames // 4: 3 * hold_frames // 4].mean(axis=0)
                held.append(_render_minus_prediction(middle[None], predicted[i:i + 1],
                                                     predicted[i:i + 1])[-1])
            print(f"| {clip.stem} | {found.voices.n_frames} frames | "
                  + " | ".join(f"{d:+.1f}" for d in whole)
                  + f" | {np.nanmean(held):+.1f} |", flush=True)


# the level oracles of `stairs`: moving averages over about one and two update spacings
# (12 updates a frame at 60 frames/s are 69 native samples apart, 8 at 90 and 6 at 120 about 61)
STAIR_RAMPS = (69, 138)


def _play_on(vgm, chip=None) -> np.ndarray:
    """The mono mix at 44.1 kHz of ``vgm`` (a :class:`~wav2vgm.vgm.VgmFile`) played on
    ``chip`` (default: the emulator as ``score`` plays it) with adplay's write timing."""
    from wav2vgm.opl3.render import render_events
    return render_events(vgm.times, vgm.regs, vgm.values, end_vgm=int(vgm.end_time),
                         rate_hz=44100, wait_ends=vgm.wait_ends, chip=chip).mean(axis=1)


def _oracle_levels(vgm, *, ramp: int, falling_only: bool) -> np.ndarray:
    """Play ``vgm`` with every plain sine operator's level (total level plus key scaling, in
    the chip's 0.19 dB units) moving in ramps instead of stairs: its moving average over
    ``ramp`` samples, or with ``falling_only`` only the part the envelope generator could
    ramp (per note, the least attenuation still to come, which never falls within a note)
    averaged, the rest in steps as written.  No register write plays this: an oracle."""
    from wav2vgm.opl3 import emulator as E

    def written_level(chip, n, timeline):
        level = (timeline if timeline is not None else chip._held_timeline())[0]
        return np.broadcast_to(level.astype(np.int32), (36, n))

    spans = []

    class Recording(E.Chip):
        def _span(self, n, timeline=None):
            spans.append((written_level(self, n, timeline).copy(),
                          np.repeat((self.key > 0)[:, None], n, axis=1)))
            return super()._span(n, timeline)

    _play_on(vgm, Recording())
    written = np.concatenate([a for a, _ in spans], axis=1)              # (36, n) int32
    keyed = np.concatenate([k for _, k in spans], axis=1)
    spans.clear()
    played = np.empty(written.shape, np.int16)
    half = ramp // 2
    for s in range(36):             # a slot at a time: a clip's samples, not 36 times them
        edges = np.flatnonzero(np.diff(keyed[s].astype(np.int8))) + 1
        for a, b in zip(np.r_[0, edges], np.r_[edges, written.shape[1]]):   # note by note
            note = written[s, a:b].astype(np.int64)
            # with falling_only, the least attenuation still to come in the note
            base = np.minimum.accumulate(note[::-1])[::-1] if falling_only else note
            c = np.cumsum(np.r_[np.zeros(1, np.int64), np.full(half, base[0]), base,
                                np.full(ramp - half, base[-1])])
            ramped = (c[ramp:-1] - c[:-ramp - 1]) / ramp               # centred moving average
            played[s, a:b] = np.clip(np.rint(note - base + ramped), 0, 0x1FF)
    at = [0]

    class Ramped(E.Chip):
        def _span(self, n, timeline=None):
            a = at[0]
            at[0] += n
            if timeline is None:
                timeline = self._held_timeline()
            level = np.repeat(timeline[0], n, axis=1) if timeline[0].shape[1] == 1 else timeline[0].copy()
            sine = (self.ws == 0) & (self.mod_src == E.MOD_ZERO)
            level[sine] = played[sine, a:a + n]
            return super()._span(n, (level, *timeline[1:]))

    return _play_on(vgm, Ramped())


def stairs(dirs) -> None:
    """What the chip's level stairs cost: each clip converted, played by the emulator as
    written and with its sine operators' levels in ramps (:func:`_oracle_levels`), scored
    against the input.  TL and key scaling move a level in steps at register updates, each
    step a click; the envelope generator ramps levels, but only down (a decay), so the
    ``falling ramps`` column is what envelope decays could gain at most."""
    from wav2vgm import spectrum
    from wav2vgm.vgm import read_vgm
    cols = [f"ramps of {w} samples" for w in STAIR_RAMPS]
    _header("clip", "`model` as written", *cols, f"falling ramps only ({STAIR_RAMPS[0]})",
            "`sines` as written", f"`sines`, {cols[-1]}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips(dirs):
            ref = load_audio(str(clip), target_rate_hz=44100)[0]
            row = []
            for method in METHODS[::-1]:
                out = Path(tmp) / f"{method}.vgm"
                convert_file(str(clip), str(out), ConvertOptions(method=method))
                vgm = read_vgm(str(out))
                plays = [_play_on(vgm)]
                if method == "model":
                    plays += [_oracle_levels(vgm, ramp=w, falling_only=False) for w in STAIR_RAMPS]
                    plays.append(_oracle_levels(vgm, ramp=STAIR_RAMPS[0], falling_only=True))
                else:
                    plays.append(_oracle_levels(vgm, ramp=STAIR_RAMPS[-1], falling_only=False))
                row += [spectrum.logmel_distance(ref, y, rate_hz=44100).distance_db for y in plays]
            rows.append(row)
            print(f"| {clip.stem} | " + " | ".join(f"{d:.3f}" for d in row) + " |", flush=True)
    print("| mean | " + " | ".join(f"{d:.3f}" for d in np.mean(rows, axis=0)) + " |")


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
    p.add_argument("what", choices=["quality", "speed", "voices", "render", "memory", "batch", "card",
                                    "floor", "stereo", "sides", "startup", "bands", "queue", "valleys",
                                    "vibrato", "tones", "close", "glides", "stairs", "all"])
    p.add_argument("--player", choices=["emulator", "adplay"], default="emulator")
    p.add_argument("--clips", nargs="*", default=[str(d) for d in DEFAULT_DIRS])
    p.add_argument("--quality", default="balanced", choices=["fast", "balanced", "best"],
                   help="quality: the model method's --quality")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="quality and speed: another exported ONNX model for the model method")
    p.add_argument("--substeps", type=int, default=None,
                   help="quality and speed: another --substeps than the default, for every method")
    a = p.parse_args(argv)
    if a.what in ("voices", "all"):
        voices()
    if a.what in ("speed", "all"):
        speed(a.model, a.substeps)
    if a.what in ("render", "all"):
        render()
    if a.what in ("quality", "all"):
        quality(a.clips, a.player, a.model, a.quality, a.substeps)
    if a.what in ("memory", "all"):
        memory()
    if a.what in ("batch", "all"):
        batch()
    if a.what in ("startup", "all"):
        startup()
    if a.what == "stairs":                  # the emulator's, alone: its oracles need its insides
        stairs(a.clips)
    by_player = {"floor": floor, "stereo": stereo, "sides": sides, "bands": bands, "queue": queue,
                 "valleys": valleys, "vibrato": vibrato, "tones": tones, "close": close, "glides": glides,
                 "card": card}              # alone, with --player
    if a.what in by_player:
        by_player[a.what](a.player)
    return 0


if __name__ == "__main__":
    sys.exit(main())
