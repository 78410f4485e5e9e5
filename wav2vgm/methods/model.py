"""The model method: the exported ONNX inverse model inside an analysis-by-synthesis loop.

Per block of frames:

1. log-frequency features -> batched onnxruntime calls (32 frames each) -> per (timbre,
   semitone) detection probabilities and levels -> the most probable voices
   per frame, each voice's pitch refined on the linear spectrum, each offered
   with its three most probable timbres;
2. the sine tracker (:mod:`.sines`) plays the strongest partials on 16 of
   the 18 channels, at their mel bands' power;
3. the model's voices, the frame's spectral peaks as sines and as sine
   pairs (two partials one channel plays on its two operators), feedback
   noise and the band timbres (:data:`~.codebook.BAND_TLS`: noise limited
   to a band, at BAND_CENTRES_HZ) are candidates for
   :func:`~wav2vgm.methods.pursuit.pursue`, which fills the other 2
   channels with the voices and levels that most reduce the log-mel
   error left by the tracker (spectra from emulator-rendered atoms), one
   voice set per stretch of steady sound (a held note or chord, split at
   onsets and spectral changes, at most half a second), their levels fitted
   per frame and steadied by a running median over 0.15 s;
4. those voices are assigned to channels: a voice continues the channel
   that played the same timbre at a nearby pitch; a new voice takes a
   silent channel, so no channel changes timbre while its key is held;
5. at quality "best", judged by sound once more: per stretch of half a
   second, this mix is compared (log-mel error against the input, from the
   atoms) with the sine tracker alone on all 18 channels, and the closer
   one plays, with hysteresis ("balanced" and "fast" play the mix: see
   QUALITY).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache, partial as bind
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..opl3 import registers as R
from ..spectrum import parabolic_peak
from . import codebook, features
from .base import (GLIDE_MAX_CENTS, GLIDE_MIN_CENTS, GLIDE_STEP_RATIO, VoiceFrames,
                   glide_neighbours, greedy_pairs)
from .loudness import voice_power

MODEL_SCHEMA = "wav2vgm-inverse-2"
MODEL_FILE = "inverse.onnx"
THRESHOLD = 0.25
# each detected pitch is offered to the pursuit with this many of its most probable
# timbres (the network names the right one about 63% of the time on its validation
# frames; the pursuit judges them by sound): 1 / 2 / 3 / 5 measured 2.818 / 2.797 /
# 2.782 / 2.799 dB over the 23 clips (adplay), for about 10% more conversion time
TIMBRES_PER_DETECTION = 3
# quality -> (peaks tried as sines and sine pairs, the spectral change that
#             starts a new voice set (mean dB per band), candidates re-evaluated
#             per pursuit step, options compared).  "best" differs from "balanced"
# in its 2 dB threshold and its frame rate for busy sound (AUTO_FRAME_RATES_HZ); when it
# always ran at 90 frames/s with balanced's search then, its old wider search
# (44, 1.5, 10) scored 2.540 dB over the 23 clips (adplay) at 90 frames/s against
# 2.537 for this one in half the time, and 2.626 against 2.596 at 60 frames/s.  "fast"
# (mix only): (24, 3.0, 3) 2.670, (40, 3.0, 3) 2.624, (40, 2.5, 3) 2.615, this 2.612 in
# the same time (0.93-0.94 s on the 60 s clip); a 2 dB change threshold takes 1.2 s.
# "balanced" with a 2.0 / 2.25 / 2.5 dB change threshold: 2.496 / 2.495 / 2.505 dB; in
# noise the per-band levels jitter past 2 dB, so the benchmarks' 60 s melody with noise
# was cut into 763 / 199 segments at 2.0 / 2.25 dB (the 23 clips: 2557 / 2284) and its
# 20 s version scored 2.45 / 2.43 dB; "best" keeps 2.0 (2.436 against 2.444 at 2.25).
# Candidates re-evaluated per step: the first estimate fits each candidate at its
# strongest band only, which undersells those with no measured level (the band timbres,
# the noise) until they are re-evaluated at their in-band levels.  With the band timbres,
# "balanced" 6 / 8 / 10 / 12 / 16: 2.170 / 2.160 / 2.158 / 2.157 / 2.158 dB (the 15
# clips tuned on 2.187 / 2.184 / 2.180 / 2.181 / 2.182), "best" 6 / 10 / 16: 2.152 /
# 2.138 / 2.140, "fast" 4 / 6 / 10: 2.269 / 2.253 / 2.240; no difference in time that
# shows through the run-to-run noise (one core, 60 s of speech and OPL music, the least of
# four interleaved runs: "balanced" 3.28 / 3.12 s at 6 / 10, "fast" 1.78 / 1.88 s at 4 / 10)
# "balanced" plays the mix alone: compared with the sines alone (SWITCH_S) it kept the
# sines on none of the 15 clips tuned on and on 2 of the 23 (flute all the time, 1.796 ->
# 1.813 dB without the comparison; opl_random_21 13% of the time, 1.953 -> 1.950), for a
# second sine tracker that cost 15-20% of its time (60 s clip, six interleaved runs:
# 0.968 -> 0.815 s at best).  "best" still compares.
QUALITY = {"fast": (40, 2.5, 10, ("mix",)), "balanced": (40, 2.25, 10, ("mix",)),
           "best": (40, 2.0, 10, ("sines", "mix"))}
# the loudest peaks picked per channel (sines.peaks_for), the band leaders coming on top
# (see sines.PEAKS_PER_CHANNEL), and the spare peaks the tracker's first operators may
# pair with (the first in its order: those in bands no channel plays, then the loudest).
# adplay, 23 clips (2026-12-05), "balanced": 3 of the loudest a channel and no leaders
# (as before) 2.032 dB; with the leaders 0 / 1 / 2 a channel 2.013 / 2.004 / 2.004 (the
# 15 tuned on 2.016 / 2.004 / 2.007); at 1, 27 / 36 / 48 / all spares 2.011 / 2.004 /
# 2.007 / 2.007.  Speech gains most (speech_a 2.76 -> 2.64, speech_es 2.90 -> 2.80), the
# random-patch clips lose a little (opl_random_12 1.85 -> 1.88, _13 2.12 -> 2.14).  "fast" 2.090 -> 2.067, "best" (which took 5 of the loudest
# a channel) 1.996 -> 1.990, 2 / 3 a channel there 1.991 / 1.999.  The leaders cost
# "balanced" about 5% of its time on the 60 s speed clip, whose noise puts a leader in
# nearly every band (six interleaved pairs of runs, one core)
LOUDEST_PER_CHANNEL = 1
TRACKER_SPARES = 36
# frames per onnxruntime call: the network's activations for 32 frames stay in cache
# (one core: 23.3 ms for 130 frames in calls of 32, 27.1 ms in one call; same outputs)
ONNX_BATCH = 32
# the base pitch of the always-offered noise candidate (its spectrum hardly depends on it:
# adplay, 23 clips, 4 kHz 2.495 dB, 6 kHz 2.495, both 2 and 6 kHz 2.495, none 2.512;
# opl_song_doofus 3.21 -> 3.11, opl_random_23 2.13 -> 2.03, organ 1.98 -> 1.92)
NOISE_BASE_HZ = 6000.0
# the centres (the carrier's pitch) the band timbres are offered at, half an octave apart.
# adplay, 23 clips, band timbres with TL 0/4/8 at 1.5-8.5 kHz: none 2.298 dB, these 2.192
# (speech 3.23 -> 2.91, speech_a 3.47 -> 3.05, speech_b 3.69 -> 3.12, speech_es 3.39 ->
# 3.10, speech_gb 3.48 -> 3.08, opl_patches 2.57 -> 2.46; worst melody 1.86 -> 1.91); a
# quarter octave apart (11 centres) 2.200, 1-12 kHz (8 centres) 2.193.  With TL 0/4/8/12
# 2.187, 0/4/8/12/16 2.185 (2.182 rendered afresh: the shipped atoms are float16 dB), 0/8
# 2.221; then 1.5-12 kHz 2.185 and these, 2.1-12 kHz, 2.182 (chosen on the 15 clips
# tuned on: 2.203 against 2.214).  The 12 kHz centre is for cymbals, which the clips
# lack.  `python benchmarks/run.py bands --player adplay`: band-limited noise without /
# with them (steady 3-7 kHz 6.61 / 5.80 dB, hits at 9-14 kHz 4.83 / 3.87; below 3 kHz
# barely better: steady 1-2.5 kHz 4.88 / 4.83)
BAND_CENTRES_HZ = (2121.0, 3000.0, 4243.0, 6000.0, 8485.0, 12000.0)


def band_candidates() -> tuple[np.ndarray, np.ndarray]:
    """(timbre, base pitch in Hz) of every band timbre at every centre, flat."""
    cls = np.repeat(codebook.BAND_CLASSES, len(BAND_CENTRES_HZ))
    f0 = np.tile(np.asarray(BAND_CENTRES_HZ), codebook.BAND_CLASSES.size)
    return cls, f0 / R.MULT_FACTORS[codebook.BAND_CARRIER_MULT]


SEGMENT_MAX_S = 0.5           # a voice set lasts at most this long, however steady the sound
# the levels the pursuit fits frame by frame jump between its trial gains as the partials
# in the judged band beat: their running median over this long (within a segment) plays.
# adplay, 23 clips: none 2.633 dB, 0.05 s 2.627, 0.08 s 2.622, 0.15 s 2.620, 0.25 s 2.619
# (opl_patches 2.96 -> 2.81, random-patch clips -0.01 to -0.06, organ +0.05)
LEVEL_MEDIAN_S = 0.15
SWITCH_S = 0.5                # the options are compared per stretch of this length
# where an operator of a held channel jumps (the tracker moving it to another partial,
# 100 cents or more), its level passes the jump at the quieter frame's level plus this
# share of the way to the two frames' mean (dB) instead of at the mean
# (:func:`~.base.subdivide`).  adplay, the 15 clips tuned on, shares 0.2 / 0.25 / 0.3 /
# 0.35 / 0.4 / 0.45 / 0.5 / 1 (the mean): 2.088 / 2.086 / 2.087 / 2.085 / 2.092 / 2.091 /
# 2.091 / 2.115 dB; at 0.35 the 8 held out 2.095 -> 2.059, speech_a 2.94 -> 2.86,
# speech_es 3.05 -> 2.93, opl_random_12 2.12 -> 2.00, opl_patches 2.25 -> 2.14; 17 of
# the 23 closer, 6 further by 0.006-0.019 dB (chord, organ and galway most).  `fast` and `best` gain
# as much.  Applied to both operators wherever the channel's pitch jumps (also to the
# one that keeps its partial when only its partner moves): 2.088 / 2.071; the quieter
# level at once (a step of several TL steps) 2.328 over the 23, a ramp over half the
# half hop 2.135.  The sine tracker's channels carry the gain (that rule on the model's
# 2 channels alone: none); `sines` alone does not gain (3.158 -> 3.182 / 3.166 / 3.157
# at 0.35 / 0.5 / 0.7) and keeps the mean
JUMP_SHARE = 0.35
# the options compared per stretch: how many channels the model's voices get (the
# sine tracker keeps the others).  The mix once had to sound 0.4 dB (mean per band)
# closer than the sines alone, for what its voices lost between frames unseen by the
# comparison -- mostly phase jumps from a channel's register writes spread over its
# frame's burst on the player.  With them adjacent, no margin: adplay, 23 clips,
# 2.644 -> 2.631 dB (organ 2.25 -> 2.08, strings -0.07, opl_random_13 -0.12,
# opl_random_12 +0.07; 0.2 dB: 2.639, -0.2 dB: 2.635).  The mix gives the model's voices
# 2 channels: with their levels steadied (LEVEL_MEDIAN_S), adplay, 23 clips, 1 / 2 / 3 / 4
# channels 2.669 / 2.596 / 2.629 / 2.620 dB (`fast` 2.779 -> 2.670, `best` 2.574 -> 2.540
# for 4 -> 2; chord -0.15, opl_patches -0.10, opl_random_21/22 -0.11/-0.09, opl_random_12
# +0.10, speech_a/gb +0.07); a third option (2 and 4, or 2 and 1) 2.607 / 2.598; with
# no option favoured before the first stretch (below), a third of 1 / 4 channels 2.294 /
# 2.313 against 2.298, for a third tracker run.  Rechecked on 2026-12-05 with the band
# timbres and all since: 2 / 3 / 4 channels 2.064 / 2.085 / 2.136 dB (3: speech 2.78 ->
# 2.73, trumpet -0.03, but melody +0.10, wormintr +0.07, opl_random_13 +0.04)
MIX_VOICES = (0, 2)
OPTIONS = ("sines", "mix")
# the option playing now is favoured by this much (mean dB per band); none is before the
# first stretch.  (When the sines were taken as playing from the start, short clips kept
# them wherever the mix was predicted closer by less than this: adplay, 23 clips, 2.314
# -> 2.298 dB without (organ 1.83 -> 1.71, opl_random_12 2.28 -> 2.15, speech_a 3.57 ->
# 3.47; trumpet 2.15 -> 2.22, opl_random_11 1.81 -> 1.87); 0.25 / 1.0 dB scored 2.299 /
# 2.298, none at all 2.316 (flute 1.78 -> 2.00: the options flap)
SWITCH_HYST_DB = 0.5
# A pursuit voice holds its segment's pitch.  Next to a tracked partial whose pitch moves
# (vibrato, a glide) it beats against it and flickers in and out with the segments, heard
# as clicks 40-60 dB down, which the atoms (power spectra, added as powers) cannot hear:
# the pursuit chose such voices to fill the spread of a moving partial.  So no pitched
# candidate's loudest partial may lie within NEAR_MOVING_CENTS of a tracked partial whose
# pitch glides over at least MOVING_CENTS within MOVING_S either side of the frame the
# pursuit reads (:func:`moving_partials`).  `python benchmarks/run.py vibrato --player
# adplay`: 440 Hz with 5 harmonics and a 6 Hz vibrato of 50 cents 3.86 -> 1.55 dB
# (`sines` 1.53); 8 fluidsynth instruments with vibrato 2.449 -> 2.409 (oboe 3.06 ->
# 2.87, `sines` 2.99); the 23 clips 2.067 either way.  (Before operator 1 filled in
# levels, :func:`~.base.helper_levels`, MOVING_S 0.035 s against 0.05: the tone 2.07 /
# 2.42, the instruments 2.403 / 2.409, the 23 clips 2.070 / 2.067.)  The glide was first
# told from a jump by a span of at most 200 cents, which left fast glides out: a 3 s
# sweep from 50 Hz to 8 kHz (`run.py tones`) 5.18 -> 3.25 dB (`sines` 3.04) with the
# step rule, the 23 clips 2.065 -> 2.064
MOVING_CENTS = 20.0
MOVING_S = 0.05
# A tracked partial also moves where its pitch glides one way in steps over _TRACK_CENTS
# (up to GLIDE_MAX_CENTS; at least two steps of GLIDE_MIN_CENTS, so a channel moved once to
# another partial is no glide): the sine tracker keeps a gliding loudest partial on its
# channel (:func:`~.sines._glides`).  `python benchmarks/run.py glides --player adplay`:
# 8 notes joined by 40 ms glides 4.56 -> 4.13 dB, sweeps 3 kHz -> 100 Hz 8.94 -> 7.52,
# a +-200 Hz vibrato 6.19 -> 6.13; the 23 clips the same (2.0644).  And where it turns
# (a wide vibrato), every step over _TRACK_CENTS going as its neighbours do: that vibrato
# 4.09 -> 3.49 (after the pitch glides within frames, :func:`~.base.subdivide`), the 23
# clips 2.0643 -> 2.0644 (galway +0.001); with either neighbour instead of both 2.34, but
# the 23 clips 2.0650 (chord +0.006, speech_a +0.005).  Where the loudest glides so, every
# partial sounding with it counts as moving (its harmonics, re-keyed frame by frame):
# the 8 notes 4.19 -> 3.90, the vibrato 3.49 -> 2.94; the 23 clips the same (melody
# +0.001), the vibrato set of `run.py vibrato` the same (2.313).  Two gaps remained, where
# the mix played worse than its tracker alone (its 2 channels left empty: 3.21 / 5.24 /
# 2.00): (1) the loudest partial that glides faster than a channel follows is keyed on
# another channel each frame, so no channel held it through the window and nothing
# counted as moving -- at a +-200 Hz vibrato's slow turn the pursuit filled its smear
# with an FM voice at -11 dB; the loudest partial now counts whichever channels play it
# (:func:`_lead_glides`; every step over _TRACK_CENTS with a neighbour going the same way
# by at least 1/GLIDE_STEP_RATIO of it, so a vowel's loudest harmonic hopping to the next
# is none); (2) a voice judged on its segment's middle frame sounded at its fitted level
# on every frame, loudest where a tracked partial glided through its pitch at the
# segment's ends (the note's own fundamental at full level for a frame, each note); it
# now rests on the frames where its loudest partial comes near a moving one.  `run.py
# glides`, adplay: 8 notes 3.90 -> 3.23 dB, sweeps 6.11 -> 5.54, the vibrato 2.94 -> 2.03
# (`sines` 3.23 / 5.57 / 2.11); the 23 clips 2.0644 -> 2.0643 (flute -0.005, speech_es
# -0.007, opl_random_23 +0.013), `fast` 2.1274 -> 2.1294, `best` 2.0551 -> 2.0554; the
# vibrato set 2.313 -> 2.311.  (Either neighbour without the size test: the 23 clips
# 2.0650, `fast` 2.1310, speech_es +0.011 at `fast`.)
NEAR_MOVING_CENTS = 100.0
FLOOR_RANGE_DB = 55.0         # bands this far below the frame's loudest count as silent
SILENT_POWER = 1e-20          # the floor of digital silence (-200 dB), so logs stay finite
_TRACK_CENTS = 100.0


# "balanced" and "best" pick their frame rate per input: where the sound changes more
# than AUTO_CHANGES_PER_S times a second (steady stretches as the pursuit cuts them, at
# 60 frames/s, over the first AUTO_PROBE_S seconds or, for inputs longer than
# AUTO_SPREAD_ABOVE_S, over AUTO_WINDOW_S seconds at each of AUTO_WINDOWS_AT, so an
# intro does not decide a whole song) they analyse 90 / 120 frames a second, otherwise
# 60.  adplay, "balanced" at 60 / 90 frames/s: speech 3.71 / 3.50 dB (38 changes a
# second), smkerem 2.09 / 1.93 (40), melody 2.14 / 1.93 (19), trumpet 2.30 / 2.24 (14);
# at 90 with a 2 dB threshold opl_patches 2.55 -> 2.65 (7 a second), opl_random_13
# 2.48 -> 2.68 (7), wormintr 1.71 -> 1.75 (6): steady sound loses.  The threshold lies
# between the samples', corpus and dev clips that lose (at most 7 a second; strings, 14
# a second, lost 0.04 dB at "best"'s settings and gains 0.13 at "balanced"'s) and those
# that gain (chord, 4 a second, gains 0.03-0.09 dB too).  23 clips: "balanced" 2.495
# (60) -> 2.420 dB, "best" 2.436 (90) -> 2.410 (60 / 90) -> 2.394 (60 / 120); on the
# dev, samples and corpus clips alone 2.501 -> 2.425 and 2.446 -> 2.423 -> 2.408.
# Rechecked for "balanced" on 2026-12-05 (23 clips): busy sound at 75 / 90 / 105 / 120
# frames a second 2.089 / 2.064 / 2.079 / 2.059 dB (at 105 doofus +0.13, flute +0.07,
# speech -0.04; 120 costs a third more frames for 0.005: design.md, Other tries).
AUTO_FRAME_RATES_HZ = {"balanced": (60.0, 90.0), "best": (60.0, 120.0)}
AUTO_CHANGES_PER_S = 10.0
AUTO_PROBE_S = 10.0
AUTO_SPREAD_ABOVE_S = 60.0
AUTO_WINDOW_S = 4.0
AUTO_WINDOWS_AT = (0.1, 0.45, 0.8)        # fractions of the input's length


def changes_per_second(power: np.ndarray, *, frame_rate_hz: float,
                       change_db: float = 2.25) -> float:
    """How often ``power`` (n_frames, N_MELS) mel power at ``frame_rate_hz`` changes: the
    starts of new steady stretches, cut as the pursuit cuts them
    (:func:`~.pursuit.steady_segments`), per second."""
    from .pursuit import steady_segments
    n = power.shape[0]
    if n == 0:
        return 0.0
    longest = max(1, int(round(SEGMENT_MAX_S * frame_rate_hz)))
    starts = steady_segments(power, silence_floor(power, float(power.max())),
                             max_frames=longest, change_db=change_db)
    return (starts.size - 1) / (n / frame_rate_hz)


def moving_partials(voices: VoiceFrames, frames: np.ndarray, *, half_frames: int) -> np.ndarray:
    """Sorted keys ``frame * 64 + log2(Hz)`` of the operators of ``voices`` that move on
    ``frames``: sounding on each of the ``half_frames`` frames either side (the table's
    ends repeated), their pitch spans at least MOVING_CENTS there and glides, no step
    from frame to frame over _TRACK_CENTS (more: the channel moved to another partial)
    unless it glides (none over GLIDE_MAX_CENTS): one way, at least two steps of
    GLIDE_MIN_CENTS, or every larger step one of a glide's (:func:`~.base.glide_neighbours`);
    and every operator sounding on a frame where the loudest glides in steps over
    _TRACK_CENTS, on one channel or re-keyed from channel to channel (:func:`_lead_glides`)."""
    fr = np.asarray(frames, np.int64)
    window = np.arange(-half_frames, half_frames + 1)
    # only the frames the windows cover: ``near`` indexes them, ``here`` is each frame's own
    covered = np.clip(fr[:, None] + window, 0, voices.n_frames - 1)
    used = np.zeros(voices.n_frames, bool)
    used[covered] = True
    need = np.flatnonzero(used)
    near = (np.cumsum(used) - 1)[covered]
    here = near[:, half_frames]
    sub = voices.rows(need)
    amp = sub.sounding_amplitudes()
    hz = np.where(amp > 0, sub.sounding_hz(), 0.0)
    # (window, frames, ops): each of the window's frames one contiguous slab, so the tests
    # along the window are operations between slabs
    log_f = np.log2(np.maximum(hz, 1e-3))[near.T]
    on = (hz > 0)[near.T].all(axis=0)                               # (frames, ops)
    span = (log_f.max(axis=0) - log_f.min(axis=0)) * 1200
    d = np.diff(log_f, axis=0) * 1200                               # cents per frame
    size = np.abs(d)
    step = size.max(axis=0, initial=0.0)
    # a glide one way, or one that turns (a wide vibrato): every step over _TRACK_CENTS
    # a glide's, like the steps on both sides of it (at the window's ends, the one inside)
    before, after = glide_neighbours(d)
    glides_on = before & after
    glides_on[0] |= after[0]
    glides_on[-1] |= before[-1]
    glide = (((((d >= 0).all(axis=0) | (d <= 0).all(axis=0))
               & ((size >= GLIDE_MIN_CENTS).sum(axis=0) >= 2))
              | ((size <= _TRACK_CENTS) | glides_on).all(axis=0))
             & (step <= GLIDE_MAX_CENTS))
    moves = on & (span >= MOVING_CENTS) & ((step <= _TRACK_CENTS) | glide)
    # where the loudest operator glides in steps over _TRACK_CENTS, every sounding one
    # counts: a gliding note's other partials move with it, each re-keyed on a channel
    # of its own from frame to frame
    if hz.shape[1] and fr.size:
        loud = np.argmax(amp[here], axis=1)[:, None]
        lead_glides = (np.take_along_axis(moves, loud, axis=1)
                       & (np.take_along_axis(step, loud, axis=1) > _TRACK_CENTS))
        moves |= (lead_glides | _lead_glides(amp, hz, near)[:, None]) & (hz[here] > 0)
    row, col = np.nonzero(moves)
    return np.sort(fr[row] * 64.0 + np.log2(hz[here[row], col]))


def _lead_glides(amp: np.ndarray, hz: np.ndarray, near: np.ndarray) -> np.ndarray:
    """(len(near),) whether the loudest partial, whichever channel plays it, glides faster
    than one channel follows over each window of frames ``near`` (frames, window): it
    sounds on all of them, some step from frame to frame exceeds _TRACK_CENTS (none
    GLIDE_MAX_CENTS), and every such step has a neighbour going the same way by at least
    1/GLIDE_STEP_RATIO of it (:func:`~.base.glide_neighbours`; at a wide vibrato's turn
    only one does; a vowel's loudest harmonic hopping to the next amid a slower drift
    has none)."""
    lead = np.take_along_axis(hz, np.argmax(amp, axis=1)[:, None], axis=1)[:, 0][near.T]
    d = np.diff(np.log2(np.maximum(lead, 1e-3)), axis=0) * 1200   # (window - 1, frames)
    size = np.abs(d)
    before, after = glide_neighbours(d)
    before[1:] &= size[:-1] >= size[1:] / GLIDE_STEP_RATIO
    after[:-1] &= size[1:] >= size[:-1] / GLIDE_STEP_RATIO
    step = size.max(axis=0, initial=0.0)
    return ((lead > 0).all(axis=0) & (step > _TRACK_CENTS) & (step <= GLIDE_MAX_CENTS)
            & ((size <= _TRACK_CENTS) | before | after).all(axis=0))


def _pitched(cls: np.ndarray) -> np.ndarray:
    """Which classes are pitched network timbres (not the noise, not a band timbre)."""
    return (cls != codebook.NOISE_CLASS) & (cls < codebook.N_NETWORK_TIMBRES)


def near_moving(frames: np.ndarray, f_hz: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """(len(frames), C) bool: ``f_hz`` (len(frames), C) lies within NEAR_MOVING_CENTS of a
    moving partial (:func:`moving_partials`) on its frame."""
    if moving.size == 0:
        return np.zeros(f_hz.shape, bool)
    key = frames[:, None] * 64.0 + np.log2(np.maximum(f_hz, 1e-3))
    width = NEAR_MOVING_CENTS / 1200
    return (np.searchsorted(moving, key + width) > np.searchsorted(moving, key - width)) & (f_hz > 0)


# a pursuit sine on the pitch of a steady tracked partial (within DOUBLE_CENTS; the
# tracked operator's pitch moves at most DOUBLE_STEADY_CENTS to either neighbouring
# frame) sounds with it at a phase their key-ons fix, louder or quieter than the summed
# power the pursuit planned with: a 5 Hz tremolo (the partial's level swinging under a
# held double) 4.07 dB against 2.30 for `sines`.  Its power goes to the tracked operator
# instead and its channel rests.  `python benchmarks/run.py tones --player adplay`, mean
# of 8 tones 1.882 -> 1.637 dB (tremolo 4.07 -> 2.36, sweep 3.25 -> 3.05, five decaying
# harmonics 0.69 -> 0.63); adplay, 23 clips: 2.066 -> 2.065 (the 15 tuned on 2.078 ->
# 2.076, held out 2.044 -> 2.046: flute 1.79 -> 1.80, opl_random_22 1.78 -> 1.79);
# vibrato set 2.312 -> 2.313.  Without the steadiness test: the 23 clips 2.0668, the
# vibrato set 2.322 (trumpet 2.62 -> 2.68: a double next to a partial that moves widens
# it, which the yardstick likes); dropping the double without moving its power (also
# without the steadiness test): the 23 clips 2.066, but the vibrato tone 1.55 -> 2.16.
# The 15 tuned on at 30 / 5 cents 2.0758; DOUBLE_CENTS 15 / 60: 2.0767 / 2.0781;
# DOUBLE_STEADY_CENTS 2 / 10: 2.0763 / 2.0764
DOUBLE_CENTS = 30.0
DOUBLE_STEADY_CENTS = 5.0


def merge_doubles(part: VoiceFrames, fill: VoiceFrames) -> None:
    """Pursuit sines (``fill``'s channels: operator 2 alone, a sine wave, no feedback) that
    double a steady operator of the tracker's ``part`` give it their power and fall
    silent, frame by frame (in place; see DOUBLE_CENTS).  Steady is judged within the
    block: its first and last frames compare with their one neighbour."""
    cents = 1200 * np.log2(np.maximum(part.sounding_hz(), 1e-3))             # (n, 2 * channels)
    amp = np.concatenate([part.amp2, part.amp1], axis=1).astype(np.float64)
    step = np.zeros_like(cents)
    step[1:] = np.abs(np.diff(cents, axis=0))
    steady = np.maximum(step, np.concatenate([step[1:], np.zeros_like(step[:1])])) <= DOUBLE_STEADY_CENTS
    steady &= amp > 0
    sine = (fill.cnt == 1) & (fill.ws2 == 0) & (fill.fb == 0) & (fill.amp2 > 0) & (fill.amp1 <= 0)
    fill_cents = 1200 * np.log2(np.maximum(R.fnum_to_hz(fill.fnum, fill.block, fill.mult2), 1e-3))
    rows = np.arange(cents.shape[0])
    for c in range(fill.amp2.shape[1]):
        off = np.abs(cents - fill_cents[:, c:c + 1])
        near = steady & (off <= DOUBLE_CENTS) & sine[:, c:c + 1]
        hit = near.any(axis=1)
        if not hit.any():
            continue
        k = np.argmin(np.where(near, off, np.inf), axis=1)[hit]
        r = rows[hit]
        amp[r, k] = np.sqrt(amp[r, k] ** 2 + fill.amp2[r, c].astype(np.float64) ** 2)
        fill.amp2[r, c] = 0.0
    n_ch = part.amp2.shape[1]
    part.amp2[:] = amp[:, :n_ch]
    part.amp1[:] = amp[:, n_ch:]


def silence_floor(power: np.ndarray, peak_power: float) -> np.ndarray:
    """(n_frames,) the power below which a band counts as silent: FLOOR_RANGE_DB under the
    frame's loudest band, and at least 60 dB under ``peak_power`` (the loudest so far)."""
    return np.maximum(np.maximum(power.max(axis=1) * 10 ** (-FLOOR_RANGE_DB / 10),
                                 peak_power * 1e-6), SILENT_POWER)


def feature_settings() -> dict:
    """What the model was trained on; checked against the runtime before use."""
    return {"rate_hz": features.ANALYSIS_RATE_HZ, "n_fft": features.N_FFT,
            "window": features.WINDOW, "bins_per_octave": features.BINS_PER_OCTAVE,
            "f_min_hz": features.F_MIN_HZ, "n_bins": features.N_BINS,
            "floor_db": features.FLOOR_DB, "n_timbres": codebook.N_NETWORK_TIMBRES,
            # frames lose their DC before the spectrum (features.analysis_spectra); models
            # trained before that lack the key and are refused
            "frame_dc": "removed"}


def default_model_path() -> Path:
    """The shipped model: installed as package data, or the repository's models/."""
    try:
        from importlib.resources import files
        p = files("wav2vgm.models") / MODEL_FILE
        if p.is_file():
            return Path(str(p))
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "models" / MODEL_FILE


@lru_cache(maxsize=4)
def load_session(path: str):
    """One onnxruntime session per process and model file, metadata checked."""
    import onnxruntime as ort

    if not os.path.isfile(path):
        raise ModelError(f"model file not found: {path}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"cannot load model {path}: {str(exc).splitlines()[0]}") from None
    meta = sess.get_modelmeta().custom_metadata_map
    if meta.get("wav2vgm_schema") != MODEL_SCHEMA:
        raise ModelError(f"{path} is not a wav2vgm inverse model (schema "
                         f"{meta.get('wav2vgm_schema')!r}, expected {MODEL_SCHEMA!r})")
    try:
        trained = json.loads(meta.get("features", "{}"))
    except ValueError:
        trained = {}
    if trained != json.loads(json.dumps(feature_settings())):
        raise ModelError(f"{path} was trained with other feature settings: {trained} "
                         f"(this wav2vgm uses {feature_settings()})")
    return sess


class ModelMethod:
    name = "model"
    jump_share = JUMP_SHARE     # how levels pass a held channel's pitch jump (subdivide)

    def __init__(self, *, n_voices: int = 18, model_path: str | None = None,
                 quality: str = "balanced", frame_rate_hz: float = 60.0):
        from .sines import SinesMethod
        self.n_voices = int(n_voices)
        path = str(model_path) if model_path else str(default_model_path())
        self.session = load_session(path)
        self.n_peaks, self.change_db, self.n_lazy, compared = \
            QUALITY[quality]
        self.max_segment = max(1, int(round(SEGMENT_MAX_S * frame_rate_hz)))
        self.median_frames = int(round(LEVEL_MEDIAN_S * frame_rate_hz)) // 2 * 2 + 1       # odd
        self.switch_frames = max(1, int(round(SWITCH_S * frame_rate_hz)))
        self.moving_frames = max(1, int(round(MOVING_S * frame_rate_hz)))
        self.partial = codebook.strongest_partial()
        self.options = [OPTIONS.index(name) for name in compared]       # indices into OPTIONS
        self.mixes = [min(MIX_VOICES[k], self.n_voices) for k in self.options]
        self.sines = [SinesMethod(n_voices=self.n_voices - k, max_spares=TRACKER_SPARES)
                      for k in self.mixes]
        self.tracks = [_Channels(k) for k in self.mixes]
        self.peak_power = 0.0
        self.current = None                # index into self.options of the one playing now
        self._last = None                                  # last frame's timbre fields and key
        self.stats = {name: 0 for name in OPTIONS}

    # -- model -> detections -------------------------------------------------------
    def detect(self, mag: np.ndarray, freqs_hz: np.ndarray):
        """Per frame the voices the model detects: class, f0_hz, amplitude, each
        (n_frames, n_voices * TIMBRES_PER_DETECTION): every detected pitch once
        for each of its TIMBRES_PER_DETECTION most probable timbres, most
        probable first."""
        x, peak_db = features.model_features(mag)
        runs = [self.session.run(None, {"features": x[i:i + ONNX_BATCH]})
                for i in range(0, max(len(x), 1), ONNX_BATCH)]
        pres, timbre, level = (np.concatenate([r[k] for r in runs]) for k in range(3))
        prob = 1.0 / (1.0 + np.exp(-pres))                      # (n, B)
        local = prob > THRESHOLD                                 # and no lower than a neighbour
        local[:, 1:] &= prob[:, 1:] >= prob[:, :-1]
        local[:, :-1] &= prob[:, :-1] >= prob[:, 1:]
        score = np.where(local, prob, 0.0)
        nv = min(self.n_voices, prob.shape[1])
        j = np.argpartition(-score, nv - 1, axis=1)[:, :nv]
        sc = np.take_along_axis(score, j, axis=1)
        logits = np.take_along_axis(timbre, j[:, None, :], axis=2)   # (n, K, nv)
        lvl_db = np.take_along_axis(level, j, axis=1) * 20.0 + peak_db[:, None]
        amp = np.where(sc > 0, 10 ** (np.minimum(lvl_db, peak_db[:, None] + 6.0) / 20.0), 0.0)
        k = TIMBRES_PER_DETECTION
        top = np.argsort(-logits, axis=1, kind="stable")[:, :k, :]           # (n, k, nv)
        cls = top.transpose(0, 2, 1).reshape(top.shape[0], -1)             # (n, nv * k)
        f_main = features.F_MIN_HZ * 2.0 ** (j / features.BINS_PER_OCTAVE)
        f_peak = self._refine(mag, freqs_hz, f_main)            # once per pitch, not per timbre
        f_main, f_peak, amp = (np.repeat(a, k, axis=1) for a in (f_main, f_peak, amp))
        f0 = np.where(cls == codebook.NOISE_CLASS, f_main, f_peak) / self.partial[cls]
        return cls, f0, amp

    def _select(self, mag, freqs_hz, power, floor, peaks, detections, starts, *, n_voices,
                base_power=None, moving=None):
        """Model voices, sines and sine pairs as candidates -> the pursuit's choice per frame.

        ``moving``: frames -> the keys of the tracked partials that move on them
        (:func:`moving_partials` of the tracker's voices).
        Returns per frame (n, n_voices): class, f0_hz, amplitude, partner
        MULT (-1: none) and partner amplitude ratio, loudest first.
        """
        from .pursuit import on_segments, pursue, segment_median, segment_refs
        from .sines import partner_table
        cls, f0, amp = detections
        nv, npk = n_voices, self.n_peaks
        pf_all, pa_all = peaks                                           # loudest first
        pf, pa = pf_all[:, :npk], pa_all[:, :npk]
        n = len(pf_all)
        refs = segment_refs(starts, n)                      # the frames the pursuit reads
        m1, q_f, q_a = (on_segments(a, starts, n)
                        for a in partner_table(pf_all[refs], pa_all[refs], n_main=npk))
        ratio = np.where(m1 >= 0, q_a / np.maximum(pa, 1e-12), 0.0)
        # feedback noise is always a candidate too (no level hint): it fills what no partial
        # does, such as breath and the faint air above the partials the tracker plays
        # and so are the band timbres at fixed centres (fricatives, cymbals)
        b_cls, b_f0 = band_candidates()
        cls = np.concatenate([np.where(amp > 0, cls, 0),
                              np.full((n, 1), codebook.NOISE_CLASS, cls.dtype),
                              np.broadcast_to(b_cls.astype(cls.dtype), (n, b_cls.size))], axis=1)
        f0 = np.concatenate([np.where(amp > 0, f0, 0.0), np.full((n, 1), NOISE_BASE_HZ),
                             np.broadcast_to(b_f0, (n, b_f0.size))], axis=1)
        amp = np.concatenate([amp, np.zeros((n, 1 + b_cls.size))], axis=1)
        zi, zf = np.zeros_like(pf, dtype=cls.dtype), np.zeros_like(pf)
        c_cls = np.concatenate([cls, zi, zi], axis=1)
        c_f0 = np.concatenate([f0, np.where(pa > 0, pf, 0.0), np.where(m1 >= 0, pf, 0.0)], axis=1)
        c_hint = np.concatenate([amp, pa, np.where(m1 >= 0, pa, 0.0)], axis=1) ** 2
        c_q = np.concatenate([np.zeros_like(f0), zf, q_f], axis=1)
        c_qp = np.concatenate([np.zeros_like(f0), zf, ratio ** 2], axis=1)
        c_m1 = np.concatenate([np.full(f0.shape, -1), np.full(pf.shape, -1), m1], axis=1)
        c_ratio = np.concatenate([np.zeros_like(f0), zf, ratio], axis=1)
        if moving is not None:
            at = refs                                           # the frames the pursuit reads
            near = near_moving(at, c_f0[at] * self.partial[c_cls[at]], moving(at)) & _pitched(c_cls[at])
            c_f0[at] = np.where(near, 0.0, c_f0[at])
        ref, level = pursue(power, c_cls, c_f0, n_voices=nv, floor_power=floor,
                            main_hz=c_f0 * self.partial[c_cls], hint_power=c_hint,
                            partner_hz=c_q, partner_power=c_qp, starts=starts, n_lazy=self.n_lazy,
                            base_power=base_power)
        # a segment's chosen candidates (at most nv) in the same columns on all its frames
        total = np.add.reduceat(level, starts, axis=0)                       # (segments, C)
        top = on_segments(np.argsort(-total, axis=1, kind="stable")[:, :nv], starts, n)
        level = segment_median(np.take_along_axis(level, top, axis=1), starts,
                               width=self.median_frames)
        if moving is not None:
            # a pitched voice rests on the frames where its loudest partial comes near a moving
            # one (its candidates were judged on the segment's middle frame only)
            t_cls = np.take_along_axis(c_cls[ref], top, axis=1)
            t_main = np.take_along_axis(c_f0[ref], top, axis=1) * self.partial[t_cls]
            sounding = _pitched(t_cls) & (level > 0)
            at = np.flatnonzero(sounding.any(axis=1))
            rest = np.zeros_like(sounding)
            rest[at] = near_moving(at, t_main[at], moving(at)) & sounding[at]
            level = np.where(rest, 0.0, level)
        # no voice louder than twice the frame's strongest partial; loudest first
        level = np.minimum(level, 2.0 * mag.max(axis=1, keepdims=True))
        loud = np.argsort(-level, axis=1, kind="stable")
        top = np.take_along_axis(top, loud, axis=1)
        pick = lambda a: np.take_along_axis(a[ref], top, axis=1)  # noqa: E731
        return (pick(c_cls), pick(c_f0), np.take_along_axis(level, loud, axis=1),
                pick(c_m1), pick(c_ratio))

    def _refine(self, mag, freqs_hz, f_main):
        """Move each voice's loudest partial onto the nearest spectral peak (within 0.6 semitone)."""
        bin_hz = freqs_hz[1] - freqs_hz[0]
        target = f_main / bin_hz                                 # fractional FFT bin
        half = np.clip(np.ceil(target * (2 ** (0.6 / 12) - 1)), 1, 12).astype(int)
        centre = np.rint(target).astype(int)
        offs = np.arange(-12, 13)
        idx = np.clip(centre[..., None] + offs, 1, mag.shape[1] - 2)
        # bins as flat indices into mag (take: cheaper than indexing rows and columns)
        flat, row = mag.reshape(-1), (np.arange(mag.shape[0]) * mag.shape[1])[:, None]
        m = flat.take(row[..., None] + idx)
        m = np.where(np.abs(offs) <= half[..., None], m, 0.0)
        best = np.argmax(m, axis=-1)
        k = np.take_along_axis(idx, best[..., None], axis=-1)[..., 0]
        a, b, c = (20 * np.log10(np.maximum(flat.take(row + k + o), 1e-9)) for o in (-1, 0, 1))
        d, _ = parabolic_peak(a, b, c)
        f_peak = (k + d) * bin_hz
        return np.where((b > a) & (b >= c), f_peak, f_main)

    # -- detections -> channels ------------------------------------------------------
    def process(self, mag: np.ndarray, freqs_hz: np.ndarray, *,
                power: np.ndarray | None = None) -> VoiceFrames:
        """``mag`` (n_frames, bins) analysis spectra -> their voices; ``power``: their mel
        power (:func:`~.pursuit.mel_power`), if known."""
        from .pursuit import mel_power, on_segments, segment_refs, steady_segments
        from .sines import peaks_for, pick_peaks
        n = mag.shape[0]
        nv = self.n_voices
        if n == 0:
            return VoiceFrames.empty(0, nv)
        if power is None:
            power = mel_power(mag)
        self.peak_power = max(self.peak_power, float(power.max()))
        floor = silence_floor(power, self.peak_power)
        peaks = pick_peaks(mag, freqs_hz, n_peaks=peaks_for(nv, per_channel=LOUDEST_PER_CHANNEL))
        # one voice set per steady stretch, chosen from the candidates of its middle frame
        # (only those frames are detected)
        starts = steady_segments(power, floor, max_frames=self.max_segment,
                                 change_db=self.change_db)
        refs = segment_refs(starts, n)
        det = tuple(on_segments(a, starts, n) for a in self.detect(mag[refs], freqs_hz))
        options = []
        for k, n_mix in enumerate(self.mixes):
            # the sine tracker on most channels, model voices filling what it leaves
            part = self.sines[k].process(mag, freqs_hz, peaks=peaks, power=power)
            part_power = self.sines[k].played_power                # what voice_power(part) gives
            if n_mix == 0:
                options.append((part, part_power))
                continue
            moving = bind(moving_partials, part, half_frames=self.moving_frames)
            fill = self._voices(mag, freqs_hz, power, floor, peaks, det, starts, k,
                                part_power, moving)
            judged = len(self.mixes) > 1                   # its sound is only needed to compare
            # (the mix's power before the merge, which moves power between operators)
            mix_power = part_power + voice_power(fill) if judged else None
            merge_doubles(part, fill)
            options.append((VoiceFrames.stack_channels([part, fill]), mix_power))
        return self._choose(options, power, floor)

    def _voices(self, mag, freqs_hz, power, floor, peaks, det, starts, k, base_power, moving):
        """The pursuit's voices for one group of channels."""
        track = self.tracks[k]
        cls, f0, amp, m1, ratio = self._select(mag, freqs_hz, power, floor, peaks, det, starts,
                                               n_voices=track.n, base_power=base_power,
                                               moving=moving)
        ch = self._assign(cls, f0, amp, m1, ratio, track)
        out = VoiceFrames.empty(mag.shape[0], track.n)
        fill_voices(out, *ch)
        return out

    def _assign(self, cls, f0, amp, m1, ratio, track: "_Channels"):
        """Per frame, voices -> channels.

        A voice continues the channel that played the same timbre within
        100 cents last frame (the key stays on; pitch and level change).  A
        new voice takes a channel that was silent last frame, or one that
        played the same timbre; otherwise it waits.  So no channel changes
        timbre while keyed (which would click).
        """
        n, nv = cls.shape
        # each frame's live voices first (in voice order); the frame loop works on lists
        n_live = (amp > 0).sum(axis=1)
        width = int(n_live.max()) if n else 0
        order = np.argsort(amp <= 0, axis=1, kind="stable")[:, :width]
        v_cls = np.take_along_axis(cls, order, axis=1)
        v_f0 = np.take_along_axis(f0, order, axis=1)
        partial = self.partial[np.maximum(v_cls, 0)]
        f_now = v_f0 * partial                                       # each voice's main partial
        f_then = np.maximum(v_f0, 1e-6) * partial
        prev_main = np.maximum(track.prev_f, 1e-6) * self.partial[np.maximum(track.prev_class, 0)]
        with np.errstate(divide="ignore", invalid="ignore"):
            # cents to the channels' last partials (frame 0), to last frame's voices (others)
            cents_first = 1200 * np.abs(np.log2(f_now[:1, :, None] / prev_main[None, None, :]))
            cents_next = 1200 * np.abs(np.log2(f_now[1:, :, None] / f_then[:-1, None, :]))
        cents_first, cents_next = cents_first.tolist(), cents_next.tolist()
        counts, v_cls_l = n_live.tolist(), v_cls.tolist()
        prev_c = track.prev_class.tolist()
        prev_voice = list(range(nv))                # frame 0 compares with channels
        idle = [-1] * nv
        played = []                                 # per frame, position in its live voices
        for i in range(n):
            k = counts[i]
            if k == 0:
                prev_c = idle
                played.append(idle)
                continue
            classes = v_cls_l[i]
            cents = cents_first[0] if i == 0 else cents_next[i - 1]
            pairs = [(x, p, c) for c, q in enumerate(prev_voice) if prev_c[c] >= 0
                     for p in range(k) if classes[p] == prev_c[c] and (x := cents[p][q]) < _TRACK_CENTS]
            assigned = greedy_pairs(pairs, nv)
            if nv - assigned.count(-1) < k:         # voices left to place (most frames have none)
                taken = set(assigned)
                silent = [c for c in range(nv) if prev_c[c] < 0 and assigned[c] < 0]
                waiting = [c for c in range(nv) if prev_c[c] >= 0 and assigned[c] < 0]
                for p in range(k):
                    if p in taken:
                        continue
                    if silent:
                        assigned[silent.pop(0)] = p
                        continue
                    for c in waiting:
                        if prev_c[c] == classes[p]:
                            waiting.remove(c)
                            assigned[c] = p
                            break
            prev_c = [classes[p] if p >= 0 else -1 for p in assigned]
            prev_voice = assigned
            played.append(assigned)
        played = np.array(played, np.int64).reshape(n, nv)
        rows = np.full((n, nv), -1, np.int64)       # the voice each channel plays
        if width:
            rows = np.where(played >= 0, np.take_along_axis(order, np.maximum(played, 0), axis=1), -1)
        on = rows >= 0
        r = np.maximum(rows, 0)

        def pick(a, off, dtype):
            return np.where(on, np.take_along_axis(a, r, axis=1), off).astype(dtype)
        ch_cls, ch_m1 = pick(cls, -1, np.int64), pick(m1, -1, np.int64)
        ch_f, ch_a, ch_r = pick(f0, 0.0, np.float64), pick(amp, 0.0, np.float64), pick(ratio, 0.0, np.float64)
        if n:
            track.prev_class, track.prev_f = ch_cls[-1].copy(), ch_f[-1].copy()
        return ch_cls, ch_f, ch_a, ch_m1, ch_r

    def _choose(self, options, power, floor) -> VoiceFrames:
        """Per stretch of SWITCH_S seconds, keep the option that sounds closest.

        Options are compared by their log-mel error (from the atoms); the one
        playing now is favoured by SWITCH_HYST_DB so the choice does not flap.
        """
        from .pursuit import log_error
        n = power.shape[0]
        use = np.zeros(n, np.int64)
        errors = (np.stack([log_error(p, power, floor) for _, p in options])   # (options, n)
                  if len(options) > 1 else np.zeros((1, n)))
        for lo in range(0, n, self.switch_frames):
            s = slice(lo, min(lo + self.switch_frames, n))
            cost = errors[:, s].mean(axis=1)
            if self.current is not None:
                cost[self.current] -= SWITCH_HYST_DB
            self.current = int(np.argmin(cost))
            use[s] = self.current
        for k, option in enumerate(self.options):
            self.stats[OPTIONS[option]] += int((use == k).sum())
        out = VoiceFrames.empty(n, self.n_voices)
        for name in VoiceFrames.__dataclass_fields__:
            if name == "outputs":
                continue
            arrays = [getattr(v, name) for v, _ in options]
            getattr(out, name)[:] = arrays[0] if len(arrays) == 1 else np.take_along_axis(
                np.stack(arrays), use[None, :, None], axis=0)[0]
        self._rest_on_timbre_change(out)
        return out

    def _rest_on_timbre_change(self, out: VoiceFrames) -> None:
        """Where the option changes, a channel whose timbre changes rests one frame.

        Its key goes off (and its release runs) before the new voice keys
        on, instead of the patch changing under a held key, which clicks.
        """
        fields = ("cnt", "fb", "ws1", "ws2", "mult1")
        now = np.stack([getattr(out, f).astype(np.int64) for f in fields], axis=-1)   # (n, ch, 5)
        sounding = (out.amp2 > 0) | (out.amp1 > 0)
        prev = np.concatenate([self._last[0][None], now[:-1]]) if self._last else now
        prev_on = np.concatenate([self._last[1][None], sounding[:-1]]) if self._last else sounding
        fm = now[..., 0] == 0
        differs = (now[..., :4] != prev[..., :4]).any(axis=-1) | (fm & (now[..., 4] != prev[..., 4]))
        rest = differs & prev_on & sounding
        if self._last is None:
            rest[0] = False
        out.amp1[rest] = 0.0
        out.amp2[rest] = 0.0
        self._last = (now[-1], sounding[-1] & ~rest[-1])


def fill_voices(out: VoiceFrames, ch_cls, ch_f, ch_a, ch_m1, ch_r) -> None:
    """Codebook voices per (frame, channel) -> register fields of ``out``.

    ``ch_cls`` timbre (-1: silent), ``ch_f`` base pitch in Hz, ``ch_a`` level;
    for sines, ``ch_m1`` the partner's multiplier (-1: none) and ``ch_r`` its
    amplitude ratio.
    """
    on = ch_cls >= 0
    k = np.where(on, ch_cls, 0)
    tab = codebook.TIMBRES
    f = np.where(on, ch_f, 440.0)
    # a sine above 6.2 kHz is reached through the multiplier (both operators alike)
    m2 = np.where(k == 0, R.carrier_mult(f), 1)
    fnum, block = R.hz_to_fnum(f, mult=m2)
    out.fnum[:] = fnum
    out.block[:] = block
    pair = (k == 0) & (ch_m1 >= 0)
    out.mult1[:] = np.where(pair, ch_m1, np.where(k == 0, m2, np.array([t.mult1 for t in tab])[k]))
    out.mult2[:] = np.where(k == 0, m2, np.array([t.mult2 for t in tab])[k])
    out.ws1[:] = np.array([t.ws1 for t in tab])[k]
    out.ws2[:] = np.array([t.ws2 for t in tab])[k]
    out.fb[:] = np.array([t.fb for t in tab])[k]
    out.cnt[:] = np.array([t.cnt for t in tab])[k]
    out.mod_tl1[:] = np.array([t.tl1 for t in tab])[k]
    a = np.where(on, ch_a, 0.0).astype(np.float32)
    out.amp1[:] = np.where(pair, a * ch_r, 0.0)
    out.amp2[:] = a


class _Channels:
    """What a group of channels played last frame (the pursuit's channel assignment state)."""

    def __init__(self, n: int):
        self.n = int(n)
        self.prev_class = np.full(self.n, -1)
        self.prev_f = np.zeros(self.n)

