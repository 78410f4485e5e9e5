"""The default method: the exported ONNX inverse model, decoded into channels.

Per block of frames: log-frequency features -> one batched onnxruntime call
-> per (timbre, semitone) detection probabilities and levels -> the most
probable voices per frame (local maxima, at most one per channel) -> each
voice's pitch refined on the linear spectrum (the timbre's strongest partial
is located by parabolic interpolation) -> voices assigned to channels so a
voice that continues keeps its channel (and its key) -> :class:`VoiceFrames`.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..opl3 import registers as R
from ..spectrum import parabolic_peak
from . import codebook, features
from .base import VoiceFrames, greedy_match

MODEL_SCHEMA = "wav2vgm-inverse-2"
MODEL_FILE = "inverse.onnx"
THRESHOLD = {"fast": 0.5, "balanced": 0.35, "best": 0.25}
_TRACK_CENTS = 100.0


def feature_settings() -> dict:
    """What the model was trained on; checked against the runtime before use."""
    return {"rate_hz": features.ANALYSIS_RATE_HZ, "n_fft": features.N_FFT,
            "window": features.WINDOW, "bins_per_octave": features.BINS_PER_OCTAVE,
            "f_min_hz": features.F_MIN_HZ, "n_bins": features.N_BINS,
            "floor_db": features.FLOOR_DB, "n_timbres": codebook.N_TIMBRES}


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

    def __init__(self, *, n_voices: int = 18, model_path: str | None = None,
                 quality: str = "balanced"):
        self.n_voices = int(n_voices)
        path = str(model_path) if model_path else str(default_model_path())
        self.session = load_session(path)
        self.threshold = THRESHOLD[quality]
        self.pursuit = quality != "fast"
        self.partial = codebook.strongest_partial()
        self.timbres = codebook.TIMBRES
        self.prev_class = np.full(self.n_voices, -1)
        self.prev_f = np.zeros(self.n_voices)

    # -- model -> detections -------------------------------------------------------
    def detect(self, mag: np.ndarray, freqs_hz: np.ndarray):
        """Per frame the detected voices.

        Returns class, f0_hz, amplitude (n_frames, n_voices), their timbre
        logits (n_frames, n_voices, N_TIMBRES) and the frame's spectral peaks
        (freq_hz, amp), loudest first (None without the pursuit).
        """
        x, peak_db = features.model_features(mag)
        pres, timbre, level = self.session.run(None, {"features": x})
        prob = 1.0 / (1.0 + np.exp(-pres))                      # (n, B)
        padded = np.pad(prob, ((0, 0), (1, 1)))
        local = (prob >= padded[:, :-2]) & (prob >= padded[:, 2:]) & (prob > self.threshold)
        score = np.where(local, prob, 0.0)
        nv = min(self.n_voices, prob.shape[1])
        j = np.argpartition(-score, nv - 1, axis=1)[:, :nv]
        sc = np.take_along_axis(score, j, axis=1)
        logits = np.take_along_axis(timbre, j[:, None, :], axis=2).transpose(0, 2, 1)  # (n, nv, K)
        cls = np.argmax(logits, axis=2)
        lvl_db = np.take_along_axis(level, j, axis=1) * 20.0 + peak_db[:, None]
        amp = np.where(sc > 0, 10 ** (np.minimum(lvl_db, peak_db[:, None] + 6.0) / 20.0), 0.0)
        f_main = features.F_MIN_HZ * 2.0 ** (j / features.BINS_PER_OCTAVE)
        f0 = self._refine(mag, freqs_hz, cls, f_main) / self.partial[cls]
        if not self.pursuit:
            return cls, f0, amp, logits, None
        return self._pursue(mag, freqs_hz, cls, f0, amp, logits)

    def _pursue(self, mag, freqs_hz, cls, f0, amp, logits):
        """Re-select and re-level voices against the spectrum (model + sine candidates)."""
        from .pursuit import pursue
        from .sines import pick_peaks
        nv = self.n_voices
        peaks = pick_peaks(mag, freqs_hz, n_peaks=2 * nv + 8)       # loudest first
        pf, pa = peaks[0][:, :nv], peaks[1][:, :nv]
        cand_cls = np.concatenate([np.where(amp > 0, cls, 0), np.zeros_like(pf, dtype=cls.dtype)], axis=1)
        # a peak candidate is a sine: give it logits that say so, for the timbre hysteresis
        sine_logits = np.full((pf.shape[0], pf.shape[1], logits.shape[2]), -1e4, np.float32)
        sine_logits[..., 0] = 0.0
        cand_logits = np.concatenate([logits, sine_logits], axis=1)
        cand_f0 = np.concatenate([np.where(amp > 0, f0, 0.0), np.where(pa > 0, pf, 0.0)], axis=1)
        power = (mag * mag) @ features.log_matrix()
        chosen, level = pursue(power, cand_cls, cand_f0, n_voices=nv,
                               main_hz=cand_f0 * self.partial[cand_cls])
        # no voice louder than twice the frame's strongest partial: an atom with
        # almost no energy in range would otherwise get an absurd level
        level = np.minimum(level, 2.0 * mag.max(axis=1, keepdims=True))
        score = np.where(chosen, level, 0.0)
        top = np.argsort(-score, axis=1)[:, :nv]
        pick = lambda a: np.take_along_axis(a, top, axis=1)  # noqa: E731
        a = pick(score)
        chosen_logits = np.take_along_axis(cand_logits, top[..., None], axis=1)
        return pick(cand_cls), pick(cand_f0), a, chosen_logits, peaks

    def _refine(self, mag, freqs_hz, cls, f_main):
        """Move each voice's loudest partial onto the nearest spectral peak (within 0.6 semitone)."""
        bin_hz = freqs_hz[1] - freqs_hz[0]
        target = f_main / bin_hz                                 # fractional FFT bin
        half = np.clip(np.ceil(target * (2 ** (0.6 / 12) - 1)), 1, 12).astype(int)
        centre = np.rint(target).astype(int)
        offs = np.arange(-12, 13)
        idx = np.clip(centre[..., None] + offs, 1, mag.shape[1] - 2)
        rows = np.arange(mag.shape[0])[:, None, None]
        m = mag[rows, idx]
        m = np.where(np.abs(offs) <= half[..., None], m, 0.0)
        best = np.argmax(m, axis=-1)
        k = np.take_along_axis(idx, best[..., None], axis=-1)[..., 0]
        lm = 20 * np.log10(np.maximum(mag, 1e-9))
        r0 = np.arange(mag.shape[0])[:, None]
        a, b, c = lm[r0, k - 1], lm[r0, k], lm[r0, k + 1]
        d, _ = parabolic_peak(a, b, c)
        f_peak = (k + d) * bin_hz
        ok = (b > a) & (b >= c) & (cls != codebook.NOISE_CLASS)
        return np.where(ok, f_peak, f_main)

    # -- detections -> channels ------------------------------------------------------
    def process(self, mag: np.ndarray, freqs_hz: np.ndarray) -> VoiceFrames:
        n = mag.shape[0]
        nv = self.n_voices
        out = VoiceFrames.empty(n, nv)
        if n == 0:
            return out
        cls, f0, amp, timbre_logits, peaks = self.detect(mag, freqs_hz)
        ch_cls = np.full((n, nv), -1)
        ch_f = np.zeros((n, nv))
        ch_a = np.zeros((n, nv))
        prev_c, prev_f = self.prev_class.copy(), self.prev_f.copy()
        for i in range(n):
            live = np.flatnonzero(amp[i] > 0)
            # a voice continues a channel whose pitch it is near, whatever its
            # timbre: the channel keeps its key and only changes registers
            f_prev = np.maximum(prev_f[None, :], 1e-6) * self.partial[np.maximum(prev_c, 0)][None, :]
            f_now = f0[i, live][:, None] * self.partial[cls[i, live]][:, None]
            cents = 1200 * np.abs(np.log2(f_now / f_prev))
            match = greedy_match(np.where((prev_c[None, :] >= 0) & (cents < _TRACK_CENTS), cents, np.inf))
            assigned = np.where(match >= 0, live[np.maximum(match, 0)] if live.size else -1, -1)
            taken = np.zeros(live.size, bool)
            taken[match[match >= 0]] = True
            free = [c for c in np.argsort(prev_c >= 0, kind="stable") if assigned[c] < 0]
            for p in np.flatnonzero(~taken):
                if not free:
                    break
                assigned[free.pop(0)] = live[p]
            on = assigned >= 0
            sel = assigned[on]
            # timbre hysteresis: a continuing voice keeps its timbre unless another is clearly likelier
            new_cls = cls[i, sel].copy()
            prev_sel = prev_c[on]
            keep_prev = prev_sel >= 0
            if keep_prev.any():
                lg = timbre_logits[i, sel]
                prev_logit = lg[np.arange(sel.size), np.maximum(prev_sel, 0)]
                best_logit = lg[np.arange(sel.size), new_cls]
                stay = keep_prev & (best_logit - prev_logit < 1.0)
                new_cls = np.where(stay, prev_sel, new_cls)
            ch_cls[i, on] = new_cls
            ch_f[i, on] = f0[i, sel]
            ch_a[i, on] = amp[i, sel]
            prev_c = np.where(on, ch_cls[i], -1)
            prev_f = np.where(on, ch_f[i], 0.0)
        self.prev_class, self.prev_f = prev_c, prev_f
        self._fill(out, ch_cls, ch_f, ch_a)
        if self.pursuit:
            self._add_partners(out, ch_cls, ch_f, ch_a, peaks)
        return out

    def _fill(self, out: VoiceFrames, ch_cls, ch_f, ch_a) -> None:
        on = ch_cls >= 0
        k = np.where(on, ch_cls, 0)
        tab = self.timbres
        cnt = np.array([t.cnt for t in tab])[k]
        noise = np.array([t.noise for t in tab])[k]
        f = np.where(on, ch_f, 440.0)
        # a sine above 6.2 kHz is reached through the multiplier (both operators alike)
        m2 = np.where(k == 0, R.carrier_mult(f), 1)
        fnum, block = R.hz_to_fnum(f, mult=m2)
        out.fnum[:] = fnum
        out.block[:] = block
        out.mult1[:] = np.where(k == 0, m2, np.array([t.mult1 for t in tab])[k])
        out.mult2[:] = m2
        out.ws1[:] = np.array([t.ws1 for t in tab])[k]
        out.ws2[:] = np.array([t.ws2 for t in tab])[k]
        out.fb[:] = np.array([t.fb for t in tab])[k]
        out.cnt[:] = cnt
        out.mod_tl1[:] = np.array([t.tl1 for t in tab])[k]
        a = np.where(on, ch_a, 0.0).astype(np.float32)
        out.amp1[:] = np.where(noise, a, 0.0)
        out.amp2[:] = np.where(noise, 0.0, a)

    def _add_partners(self, out: VoiceFrames, ch_cls, ch_f, ch_a, peaks) -> None:
        """Sine voices lend their first operator to a further partial at a multiplier ratio.

        As in the sines method: an additive channel whose second operator
        plays a partial can play another one on its first operator when the
        frequency ratio is in the multiplier table, so sine voices cost half
        a channel each.
        """
        from .sines import _RATIO_TOL, pair_partners
        pf, pa = peaks
        for i in range(ch_cls.shape[0]):
            sine = np.flatnonzero((ch_cls[i] == 0) & (ch_a[i] > 0))
            ok = pa[i] > 0
            if sine.size == 0 or not ok.any():
                continue
            f_p, a_p = pf[i, ok], pa[i, ok]       # loudest first
            used = (np.abs(f_p[:, None] / np.maximum(ch_f[i][None, ch_a[i] > 0], 1e-6) - 1)
                    < _RATIO_TOL).any(axis=1)
            base = ch_f[i, sine] / np.asarray(R.MULT_FACTORS)[out.mult2[i, sine]]
            m1, a1 = pair_partners(base, f_p[~used], a_p[~used])
            got = m1 >= 0
            out.mult1[i, sine[got]] = m1[got]
            out.amp1[i, sine[got]] = a1[got]
