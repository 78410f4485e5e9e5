"""The timbre codebook: the OPL3 voices the inverse model chooses from.

Each timbre is a 2-operator patch whose carrier runs at MULT=1, so a voice
is fully described by (timbre, base frequency, level).  The codebook spans
what the chip offers beyond sines: FM spectra of several brightnesses and
ratios (including the sub-octave MULT=0.5), the eight waveforms, feedback
timbres, and feedback-7 noise for unpitched sound (a fully fed-back modulator
driving the carrier, so the noise keeps its spectrum at every level).  The
network predicts these (NETWORK_TIMBRES); after them come the band timbres,
noise limited to a band, which the pursuit alone offers.

Templates -- the steady-state magnitude of every harmonic of every timbre,
relative to its carrier's full level -- come from the emulator
(:func:`~wav2vgm.opl3.voices.render_voices`) and are what the converter uses
to compute levels and what training uses to label data.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..opl3 import registers as R


@dataclass(frozen=True)
class Timbre:
    """A 2-op patch; ``cnt=1`` with ``tl1=63`` and ``mult1=1`` is a plain waveform voice.

    ``mult2`` is the carrier's MULT register value: 1 for every timbre the
    network knows, 15 for the band timbres (their partials crowd around
    15 times the base pitch).
    """

    name: str
    cnt: int
    fb: int
    mult1: int
    ws1: int
    ws2: int
    tl1: int        # modulator TL (FM) -- fixed: it sets the timbre
    noise: bool = False
    mult2: int = 1


def _build() -> tuple[Timbre, ...]:
    out = [Timbre("sine", 1, 0, 1, 0, 0, 63)]
    for ws in range(1, 8):
        out.append(Timbre(f"wave{ws}", 1, 0, 1, ws, ws, 63))
    for mult1, tls in ((1, (36, 28, 22, 16, 10)), (2, (36, 28, 22, 16)), (3, (34, 26, 18)),
                       (4, (34, 26)), (0, (30, 22))):
        for tl in tls:
            out.append(Timbre(f"fm{R.MULT_FACTORS[mult1]:g}-tl{tl}", 0, 0, mult1, 0, 0, tl))
    for fb in (3, 5):
        out.append(Timbre(f"fb{fb}", 0, fb, 1, 0, 0, 20))
    for ws in (1, 2):
        out.append(Timbre(f"fm1-ws{ws}", 0, 0, 1, ws, ws, 24))
    # Noise: operator 1 at full level with feedback 7 is chaotic; it modulates the
    # carrier, whose TL sets the loudness.  (Operator 1 sounding on its own would
    # have to set the loudness with its own TL, and below about TL 12 its feedback
    # no longer reaches chaos: the "noise" collapses into a tone.)
    out.append(Timbre("noise", 0, 7, 1, 0, 0, 0, noise=True))
    return tuple(out)


def _band_timbres() -> tuple[Timbre, ...]:
    """Band timbres: the carrier at 15x the base pitch, the modulator at 0.5x and loud, so
    the carrier's partials stand 0.5x apart in a band around 15x whose width the
    modulator's TL sets (mel bands within 10 dB of the loudest: TL 0 about 0.2-1.9x the
    carrier's pitch, TL 8 0.55-1.5x, TL 16 0.75-1.2x).  In
    the yardstick's mel bands such a dense comb is band-limited noise: what a fricative
    or a cymbal needs and feedback noise (white) cannot give.  Not among the network's
    classes: the pursuit offers them at fixed centres."""
    return tuple(Timbre(f"band-tl{tl}", 0, 0, 0, 0, 0, tl, mult2=BAND_CARRIER_MULT)
                 for tl in BAND_TLS)


BAND_TLS = (0, 4, 8, 12, 16)      # the modulator's TL of each band timbre
BAND_CARRIER_MULT = 15            # their carrier's MULT register value (x15)
NETWORK_TIMBRES: tuple[Timbre, ...] = _build()
N_NETWORK_TIMBRES = len(NETWORK_TIMBRES)       # the network's timbre classes: the first ones
TIMBRES: tuple[Timbre, ...] = NETWORK_TIMBRES + _band_timbres()
N_TIMBRES = len(TIMBRES)
BAND_CLASSES = np.arange(N_NETWORK_TIMBRES, N_TIMBRES)
N_HARMONICS = 48
NOISE_CLASS = next(i for i, t in enumerate(TIMBRES) if t.noise)

# Template rendering: a base frequency whose period is a whole number of
# native samples, so every harmonic falls exactly on an FFT bin.
_TEMPLATE_PERIOD = 512                    # native samples: base = 49716/512 = 97.1 Hz
_TEMPLATE_CYCLES = 16
TEMPLATE_SETTINGS = (_TEMPLATE_PERIOD, _TEMPLATE_CYCLES, "templates-1")   # in the atoms key


def voice_fields(timbre: int, f_hz) -> dict:
    """Register fields of a codebook voice at base frequency ``f_hz`` (arrays ok)."""
    t = TIMBRES[int(timbre)]
    fnum, block = R.hz_to_fnum(f_hz, mult=1)
    return dict(fnum=fnum, block=block, cnt=t.cnt, fb=t.fb, mult1=t.mult1, mult2=t.mult2,
                ws1=t.ws1, ws2=t.ws2, tl1=t.tl1)


def operator_tls(timbre, tl):
    """(TL of operator 1, TL of operator 2) of codebook voices whose carrier is at ``tl``.

    Operator 2 sounds (the carrier, or the second waveform); operator 1's TL
    is the timbre's own.  Works on arrays of timbre indices.
    """
    timbre = np.asarray(timbre)
    tl1 = np.array([t.tl1 for t in TIMBRES])[timbre]
    return tl1, np.broadcast_to(np.asarray(tl), tl1.shape)


@lru_cache(maxsize=1)
def harmonic_templates() -> np.ndarray:
    """(N_TIMBRES, N_HARMONICS) linear amplitude of harmonic h*f/2 (h = 1..) re one full-scale
    sine: the table shipped with the model when its key matches, else rendered now
    (:func:`render_harmonic_templates`)."""
    from .pursuit import shipped_atoms
    shipped = shipped_atoms("templates")
    return render_harmonic_templates() if shipped is None else shipped


def render_harmonic_templates() -> np.ndarray:
    """:func:`harmonic_templates` rendered on the emulator.

    Index ``i`` holds the partial at ``(i + 1) / 2`` times the base frequency,
    so the sub-octave (MULT=0.5) timbres are covered; for the noise timbre the
    row is its average magnitude per half-harmonic band.
    """
    from ..opl3.voices import VoiceBatch, render_voices

    n = _TEMPLATE_PERIOD * _TEMPLATE_CYCLES * 2
    inc_target = (2 ** 19) // _TEMPLATE_PERIOD          # one cycle per 512 samples
    # fnum/block with ((fnum << block) >> 1) == inc_target at MULT=1 (inc = base*2 >> 1)
    block = 4
    fnum = (inc_target << 1) >> block
    k = N_TIMBRES
    batch = VoiceBatch(
        fnum=np.full(k, fnum), block=np.full(k, block),
        fb=np.array([t.fb for t in TIMBRES]), alg=np.array([t.cnt for t in TIMBRES]),
        mult=np.array([[t.mult1, t.mult2] for t in TIMBRES]),
        tl=np.array([[t.tl1, 0] for t in TIMBRES]),
        ws=np.array([[t.ws1, t.ws2] for t in TIMBRES]))
    y = render_voices(batch, n_samples=n + 4096)[:, 4096:].astype(np.float64)
    spec = np.abs(np.fft.rfft(y, axis=1)) / (n / 2)     # sine amplitude per bin
    per_half = _TEMPLATE_CYCLES                          # bins per half-harmonic step... (n / 512 / 2)
    out = np.zeros((k, N_HARMONICS))
    for i in range(N_HARMONICS):
        centre = (i + 1) * per_half
        out[:, i] = spec[:, centre]
    return out / float(R.FULL_SCALE_OPERATOR)


@lru_cache(maxsize=1)
def strongest_partial() -> np.ndarray:
    """Per timbre, the multiple of the base frequency (in 0.5 steps) of its loudest partial.

    The model locates voices by this partial: it is what the spectrum shows
    most clearly, whatever the timbre.
    """
    t = harmonic_templates()[:, :16]
    carrier = np.array([R.MULT_FACTORS[t.mult2] for t in TIMBRES], float)
    # the band timbres' partials are alike across their band: located by the carrier's
    return np.where(carrier == 1, (np.argmax(t, axis=1) + 1) / 2.0, carrier)
