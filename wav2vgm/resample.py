"""Rational-rate polyphase resampling: the project's one resampler.

The same filter and alignment as :func:`scipy.signal.resample_poly` with its
default Kaiser window (equal to it up to floating-point rounding; the
tests compare them), written with numpy alone: importing ``scipy.signal``
costs about a second, which every conversion of a 48 kHz file and every
``render`` and ``score`` paid at start-up.

Output sample ``n`` of a signal resampled by ``up/down`` sits at input
position ``n * down / up``::

    y[n] = sum_j x[j] * h[half_len + n*down - j*up]

with ``h`` a linear-phase low-pass filter of ``2*half_len + 1`` taps, gain
``up``.  Outputs that share a phase of ``h`` (``n`` apart by a multiple of
``up``) read inputs ``down`` apart with the same taps, so each phase is one
matrix-vector product over a strided view of the input; where the phases
are many but short (48 <-> 44.1 kHz: 147 or 160), one matrix holding them
all maps each period of ``down`` inputs to its ``up`` outputs instead.
"""

from __future__ import annotations

from math import gcd
from typing import Callable, Iterator

import numpy as np

from .errors import ParameterError

KAISER_BETA = 5.0             # scipy.signal.resample_poly's default window: ("kaiser", 5.0)
HALF_LEN_PER_RATE = 10        # filter half-length in units of max(up, down), as scipy
# extra input samples of context kept on each side of a block beyond the filter's reach
CONTEXT_MARGIN = 16


def lowpass_filter(up: int, down: int) -> np.ndarray:
    """(2 * half_len + 1,) float64 taps for resampling by ``up/down`` (reduced), DC gain 1.

    A windowed sinc (Kaiser, beta 5) with its cut-off at the lower of the
    two Nyquist frequencies, ``half_len = 10 * max(up, down)``: what
    ``scipy.signal.firwin(2*half_len + 1, 1/max(up, down), window=("kaiser", 5.0))``
    designs.
    """
    up, down = _reduced(up, down)
    max_rate = max(up, down)
    half_len = HALF_LEN_PER_RATE * max_rate
    m = np.arange(2 * half_len + 1) - float(half_len)
    cutoff = 1.0 / max_rate
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(2 * half_len + 1, KAISER_BETA)
    return h / h.sum()


def resample_poly(x, up: int, down: int, *, axis: int = 0, taps: np.ndarray | None = None) -> np.ndarray:
    """Resample ``x`` along ``axis`` by ``up/down``; ``ceil(n * up / down)`` samples out.

    ``taps``: the filter (odd length, DC gain 1) to use instead of
    :func:`lowpass_filter` (a streaming caller designs it once).  Zeros are
    assumed beyond both ends of ``x``.  The result has ``x``'s float dtype
    (float64 for integer input).
    """
    up, down = _reduced(up, down)
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if up == down == 1:
        return x.copy()
    h = lowpass_filter(up, down) if taps is None else np.asarray(taps, np.float64)
    if h.ndim != 1 or h.size % 2 == 0:
        raise ParameterError(f"resampling taps must be 1-D with an odd length, got shape {h.shape}")
    h = (h * up).astype(x.dtype)
    moved = np.moveaxis(x, axis, 0)
    n_in = moved.shape[0]
    n_out = -(-n_in * up // down)
    flat = moved.reshape(n_in, -1)
    plan = _Plan(h, up, down)
    out = np.zeros((flat.shape[1], n_out), x.dtype)
    for c in range(flat.shape[1]):
        out[c] = plan.apply(flat[:, c], n_out)
    return np.moveaxis(out.T.reshape((n_out,) + moved.shape[1:]), 0, axis)


def resampled_blocks(read: Callable[[int, int], np.ndarray], n: int, up: int, down: int, *,
                     block: int, taps: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Resample a signal of ``n`` input samples by ``up/down`` a block at a time.

    ``read(count, start)`` returns input samples ``start`` to ``start + count``
    (shape ``(count,)`` or ``(count, channels)``); it is called with ``start``
    rising, each sample read once.  Yields float32 blocks, one per ``block``
    input samples, that together are :func:`resample_poly` of the whole
    signal (``ceil(n * up / down)`` samples) up to floating-point rounding:
    each block is resampled with the filter's reach of context on both
    sides, starting on an input sample whose output position is whole, so
    the polyphase phases line up with the whole signal's.
    """
    up, down = _reduced(up, down)
    h = lowpass_filter(up, down) if taps is None else taps
    half_len = (h.size - 1) // 2
    context = -(-half_len // up) + CONTEXT_MARGIN        # the filter's reach, in inputs
    left = -(-context // down) * down                    # a multiple of down: whole positions
    buf = None
    buf_start = 0                                        # input index of buf[0]
    for a in range(0, n, block):
        b = min(a + block, n)
        lo = max(0, a - left)
        hi = min(n, b + context)
        # keep [lo, buf_end) of what was read, read the rest in order
        buf_end = buf_start + (0 if buf is None else len(buf))
        if buf is not None and lo > buf_start:
            buf = buf[min(lo - buf_start, len(buf)):]
            buf_start = lo
        if hi > buf_end:
            new = read(hi - buf_end, buf_end)
            buf = new if buf is None or not len(buf) else np.concatenate((buf, new))
        chunk = buf[lo - buf_start:hi - buf_start]
        y = resample_poly(chunk, up, down, axis=0, taps=h)
        offset = (a - lo) * up // down
        k_start = a * up // down
        k_end = -(-n * up // down) if b == n else b * up // down
        yield y[offset:offset + (k_end - k_start)].astype(np.float32)


class _Plan:
    """The filter split into its ``up`` phases: output ``n = q*up + j`` (``j < up``) reads
    inputs ``q*down + b_j - m`` with taps ``h[r_j + m*up]``, ``m = 0..n_m[j]-1``, where
    ``r_j, b_j = divmod``-parts of ``j*down + half_len`` (remainder and quotient by ``up``)."""

    # the whole polyphase matrix in one product when it is small: faster than a
    # matrix-vector product per phase where there are many phases (48 <-> 44.1 kHz)
    MAX_MATRIX = 1 << 18
    MAX_COPY = 1 << 22            # input samples the product copies at once (16 MB in float32)

    def __init__(self, h: np.ndarray, up: int, down: int):
        half_len = (h.size - 1) // 2
        self.up, self.down = up, down
        t = np.arange(up) * down + half_len
        self.r, self.b = t % up, t // up
        self.n_m = (2 * half_len - self.r) // up + 1
        self.lo = int((self.b - (self.n_m - 1)).min())            # first input a period reads
        self.width = int(self.b.max()) - self.lo + 1                # inputs a period reads
        self.taps = [np.ascontiguousarray(h[r:r + (k - 1) * up + 1:up][::-1])   # oldest first
                     for r, k in zip(self.r.tolist(), self.n_m.tolist())]
        self.matrix = None
        if up >= 8 and up * self.width <= self.MAX_MATRIX:
            self.matrix = np.zeros((self.width, up), h.dtype)       # (inputs of a period, outputs)
            for j, k in enumerate(self.taps):
                first = int(self.b[j]) - (k.size - 1) - self.lo
                self.matrix[first:first + k.size, j] = k

    def apply(self, x: np.ndarray, n_out: int) -> np.ndarray:
        """(n_out,) outputs of the 1-D signal ``x`` (zeros beyond its ends)."""
        up, down = self.up, self.down
        periods = -(-n_out // up)
        left = max(0, -self.lo) + self.width
        # x.size <= periods * down, since periods * up >= n_out = ceil(x.size * up / down)
        padded = np.zeros(left + periods * down + self.width + down, x.dtype)
        padded[left:left + x.size] = x
        out = np.zeros(periods * up, x.dtype)
        if self.matrix is not None:
            slabs = np.lib.stride_tricks.sliding_window_view(padded, self.width)
            slabs = slabs[left + self.lo:left + self.lo + (periods - 1) * down + 1:down]
            # the product copies its overlapping rows: a bounded number of periods at a time
            step = max(1, self.MAX_COPY // self.width)
            for p in range(0, periods, step):
                out[p * up:(p + step) * up] = (slabs[p:p + step] @ self.matrix).ravel()
            return out[:n_out]
        views = {}
        for j, k in enumerate(self.taps):
            if k.size not in views:
                views[k.size] = np.lib.stride_tricks.sliding_window_view(padded, k.size)
            first = left + int(self.b[j]) - (k.size - 1)
            out[j::up] = views[k.size][first:first + (periods - 1) * down + 1:down] @ k
        return out[:n_out]


def _reduced(up, down) -> tuple[int, int]:
    try:
        up, down = int(up), int(down)
    except (TypeError, ValueError):
        raise ParameterError(f"resampling factors must be integers, got {up!r}/{down!r}") from None
    if up < 1 or down < 1:
        raise ParameterError(f"resampling factors must be >= 1, got {up}/{down}")
    g = gcd(up, down)
    return up // g, down // g
