"""The player's register-write queue, and a governor that keeps writes within it.

Players on the Nuked core (AdPlug's adplay, libvgm) do not apply a VGM's
register writes at their time stamps: ``OPL3_WriteRegBuffered`` queues them
and applies one every WRITE_SPACING native samples (49,716 Hz / 2: 24,858
writes a second), each at ``max(previous + 2, its time)``.  A burst of writes
therefore plays late, and when updates come faster than the queue drains,
every later write comes later still -- key-ons and pitch changes included.
The emulator models the queue (:func:`.emulator.render_writes`,
``write_spacing``).

:class:`WriteGovernor` fits a stream of register updates to the queue: where
an update's writes would not drain before the next update, it drops the
least important level-only writes (a TL change on a channel whose other
registers do not change), each written one update later unless a newer
value of the register comes then.  Everything else (key-ons and -offs,
pitch, timbre, and the levels of a channel whose timbre or note changes) is
always written at once, so a channel's sound never changes half-way.

Measured (`python benchmarks/run.py queue --player adplay`, `model`, 12
updates a frame at 90 frames/s, 41 VGM samples apart): without the governor
speech_a 3.09 dB, speech_b 3.33 (the queue runs ever later through busy
stretches); with it 2.82 and 2.97.  At the defaults (updates at least 60
samples apart: ``convert.MIN_UPDATE_SAMPLES``) it thins about 4% of
speech's writes and moves the five speech clips by at most 0.03 dB; there
it guards denser sound than theirs.
"""

from __future__ import annotations

import numpy as np

from ..vgm import VGM_RATE_HZ
from . import registers as R

# native samples between two writes leaving the queue (Nuked's OPL_WRITEBUF_DELAY)
WRITE_SPACING = 2

_NATIVE_PER_VGM = R.NATIVE_RATE_INT / VGM_RATE_HZ

# the TL registers (KSL bits included), the only ones the governor may drop
_IS_TL = np.zeros(R.N_REGISTERS, bool)
for _c in range(R.N_CHANNELS):
    for _op in (0, 1):
        _IS_TL[R.operator_register(R.OP_KSL_TL, _c, _op)] = True


def arrival_lags(n_writes: np.ndarray, drain: np.ndarray, *, lag: float = 0.0) -> np.ndarray:
    """(n_updates,) the queue's backlog (native samples) as each update arrives.

    ``n_writes``: the writes of each update; ``drain``: native samples since
    the previous update (``drain[0]``: since the backlog was ``lag``).  The
    backlog is a Lindley recursion, ``A[k] = max(0, A[k-1] + 2 n[k-1] -
    drain[k])``, computed in closed form: the running sum of the increments
    minus its running minimum.
    """
    s = _lag_sums(n_writes, drain, lag)
    return s - np.minimum(np.minimum.accumulate(s), 0.0)


def _lag_sums(n_writes: np.ndarray, drain: np.ndarray, lag: float) -> np.ndarray:
    """S[k] = lag + sum over updates i <= k of (WRITE_SPACING n[i-1] - drain[i])."""
    step = np.concatenate([[float(lag)], WRITE_SPACING * np.asarray(n_writes[:-1], np.float64)])
    return np.cumsum(step - np.asarray(drain, np.float64))


def worst_delay_s(times_vgm: np.ndarray) -> float:
    """How late (s) the worst-placed of these writes (their VGM sample times, sorted)
    leaves the queue: its backlog as its group arrives, plus the group itself."""
    if len(times_vgm) == 0:
        return 0.0
    stamps, counts = np.unique(np.asarray(times_vgm), return_counts=True)
    drain = np.diff(stamps.astype(np.float64), prepend=float(stamps[0])) * _NATIVE_PER_VGM
    late = arrival_lags(counts, drain) + WRITE_SPACING * counts
    return float(late.max()) / R.NATIVE_RATE_INT


# a channel's registers but TL: a write to one keeps the channel's TL writes of that
# update from being dropped
_IS_OTHER_CHANNEL_REGISTER = R.CHANNEL_REGISTER & ~_IS_TL

# an operator's amplitude (full scale 1) by its KSL/TL register byte
_AMPLITUDE = 10.0 ** (-R.TL_STEP_DB / 20.0 * (np.arange(256) % 64))


class WriteGovernor:
    """Drops level-only register writes that the player's write queue cannot take in time.

    Feed it the register images of consecutive updates, chunk by chunk
    (:meth:`writes`).  The budget of update ``k`` is what the queue drains
    before update ``k + 1``, less the backlog it arrives to.  An update over
    budget writes everything it must and drops its least important
    level-only TL writes (by the step in the operator's amplitude) until it
    fits; a dropped write comes with the next update, unless that update
    writes a newer value of the register anyway.  A register may lose a
    write only at every other update (by the parity of update and channel),
    so a level is never more than one update late.

    ``allowance``: the budget in units of the time to the next update.
    """

    def __init__(self, *, allowance: float = 1.0):
        self.allowance = float(allowance)
        self.lag = 0.0                    # backlog (native samples) after the last update
        self.last_time: float | None = None   # native time of the last update
        self.gap = np.inf                 # native samples between the last two updates (none yet)
        self.update = 0                   # updates so far (the parity of the next)
        self.carry = (np.zeros(0, np.int64), np.zeros(0, np.uint8))   # (reg, value) for the next update
        self.n_dropped = 0                # writes dropped (and not written later) so far
        self.n_delayed = 0                # writes moved to the next update so far

    def writes(self, images: np.ndarray, times_vgm: np.ndarray, *,
               previous: np.ndarray | None = None, next_time_vgm: float | None = None,
               write_all: bool = False, last: bool = False):
        """The writes to send for ``images`` (n, 512) at ``times_vgm`` (n,) VGM samples.

        ``previous``: the image before the first (as :func:`.registers.image_writes`).
        ``next_time_vgm``: when the update after these comes (default: as far
        after the last as the last gap).
        ``write_all``: drop nothing (the images write every register, as at a
        loop point).  ``last``: the final chunk, whose last update drops
        nothing.  Returns ``(update, reg, value)`` in
        :func:`.registers.image_writes`' order.
        """
        f, reg, value, key = R.image_writes(images, previous=previous, with_keys=True)
        n = len(times_vgm)
        if n == 0:
            return f, reg, value
        t = np.asarray(times_vgm, np.float64) * _NATIVE_PER_VGM
        gaps = np.diff(t)
        drain = np.concatenate([[0.0 if self.last_time is None else t[0] - self.last_time], gaps])
        if next_time_vgm is not None:
            self.gap = float(next_time_vgm) * _NATIVE_PER_VGM - t[-1]
        elif n > 1:
            self.gap = float(gaps[-1])
        budget = self.allowance * np.append(gaps, self.gap)        # native samples per update
        # the last chunk's delayed writes, at this chunk's first update unless it writes the register
        c_reg, c_val = self.carry
        self.carry = (c_reg[:0], c_val[:0])
        if c_reg.size and not write_all:
            written = np.zeros(R.N_REGISTERS, bool)
            written[reg[:np.searchsorted(f, 1)]] = True
            fresh = ~written[c_reg]
            c_reg, c_val = c_reg[fresh], c_val[fresh]
        else:
            c_reg, c_val = c_reg[:0], c_val[:0]
        counts = np.bincount(f, minlength=n)
        counts[0] += c_reg.size
        sums = _lag_sums(counts, drain, self.lag)
        lags = sums - np.minimum(np.minimum.accumulate(sums), 0.0)     # arrival_lags
        over = lags + WRITE_SPACING * counts > budget
        add_f, add_r, add_v = np.zeros(c_reg.size, np.int64), c_reg, c_val
        keep = None
        if write_all or not over.any():                    # the queue keeps up
            self.lag = float(lags[-1] + WRITE_SPACING * counts[-1])
        else:
            keep, a_f, a_r, a_v = self._drop(images, previous, f, reg, value, counts, drain,
                                             budget, sums, lags, over, last)
            add_f = np.concatenate([add_f, a_f])
            add_r = np.concatenate([add_r, a_r])
            add_v = np.concatenate([add_v, a_v])
        self.last_time = float(t[-1])
        self.update += n
        if add_r.size or keep is not None:
            if keep is None:
                keep = np.ones(len(reg), bool)
            # the added writes into their places in the kept ones' order
            new_key = R.write_keys(add_f, add_r)
            order = np.argsort(new_key)
            at = np.searchsorted(key[keep], new_key[order])
            f = np.insert(f[keep], at, add_f[order])
            reg = np.insert(reg[keep], at, add_r[order])
            value = np.insert(value[keep], at, add_v[order].astype(value.dtype))
        return f, reg, value

    def _drop(self, images, previous, f, reg, value, counts, drain, budget, sums, lags, over, last):
        """Which writes to drop; the dropped ones to write one update later (update, reg, value).

        ``sums``, ``lags`` and ``over``: the queue as if nothing were dropped
        (:func:`_lag_sums`, :func:`arrival_lags`, over budget).  The backlog
        is followed exactly, so the writes do not depend on how the updates
        are cut into chunks: update by update after a drop, and otherwise
        in one step to the next update over budget -- once nothing is moved
        and the backlog is no larger than undropped, it stays so, and no
        update between can go over.
        """
        n = len(counts)
        start = int(np.argmax(over))
        images = np.asarray(images, np.uint8)
        prev = np.zeros(R.N_REGISTERS, np.uint8) if previous is None else np.asarray(previous, np.uint8)
        # the candidates: TL writes from update ``start`` on, on the updates of their
        # channel's parity, where the channel writes nothing else
        first = int(np.searchsorted(f, start))
        fo, ro = f[first:], reg[first:]
        at = fo * R.N_CHANNELS + R.REGISTER_CHANNEL[ro]          # the update and channel
        busy = np.zeros(n * R.N_CHANNELS, bool)
        busy[at[_IS_OTHER_CHANNEL_REGISTER[ro]]] = True
        # (``at`` has the channel's parity: N_CHANNELS is even)
        ok = _IS_TL[ro] & ~busy[at] & ((fo + at + self.update) % 2 == 0)
        cand = first + np.flatnonzero(ok)
        fc, rc = f[cand], reg[cand]
        # importance: the amplitude step from the update before
        before = np.where(fc > 0, images[np.maximum(fc - 1, 0), rc], prev[rc])
        importance = np.abs(_AMPLITUDE[value[cand]] - _AMPLITUDE[before])
        # a dropped write comes again at the next update unless that writes the register
        # (after the chunk's last update: the next chunk sees to it)
        after = images[np.minimum(fc + 1, n - 1), rc]
        carries = (fc == n - 1) | (after == value[cand])
        key = (fc.astype(np.int64) << 31) | np.minimum(importance * 2.0**30, 2.0**31 - 1).astype(np.int64)
        order = np.argsort(key, kind="stable")        # per update, least important first (ties: in order)
        cand, fc, carries = cand[order], fc[order], carries[order]
        lo = np.searchsorted(fc, np.arange(n + 1))
        carry_sum = np.concatenate([[0], np.cumsum(carries)]).tolist()
        lo_l = lo.tolist()
        counts_l, drain_l, budget_l = counts.tolist(), drain.tolist(), budget.tolist()
        carried = 0
        drops = [0] * n
        spacing = WRITE_SPACING
        sums_l, lags_l = sums.tolist(), lags.tolist()
        over_at = np.flatnonzero(over).tolist() + [n]
        j = 0                                           # the next update over budget: over_at[j]
        k = start
        lag = lags_l[k]                                 # backlog as update k arrives
        while True:
            total = counts_l[k] + carried
            excess = total - (budget_l[k] - lag) // spacing        # a float
            carried = 0
            if excess > 0 and not (last and k == n - 1):
                d = min(int(excess), lo_l[k + 1] - lo_l[k])
                drops[k] = d
                carried = carry_sum[lo_l[k] + d] - carry_sum[lo_l[k]]
                total -= d
            after = lag + spacing * total               # backlog after update k's writes
            while over_at[j] <= k:
                j += 1
            if carried or after > lags_l[k] + spacing * counts_l[k]:
                nxt = k + 1                             # step by step
            else:
                nxt = over_at[j]                        # no update before it goes over
            if nxt >= n:
                if k < n - 1:                           # the backlog after the chunk's last update
                    after = max(after - spacing * counts_l[k] + sums_l[n - 1] - sums_l[k],
                                sums_l[n - 1] - float(sums[k + 1:].min())) + spacing * counts_l[n - 1]
                break
            if nxt == k + 1:
                lag = max(0.0, after - drain_l[nxt])
            else:
                lag = max(after - spacing * counts_l[k] + sums_l[nxt] - sums_l[k],
                          sums_l[nxt] - min(sums_l[k + 1:nxt + 1]))   # (a frame's updates)
            k = nxt
        self.lag = after
        d_arr = np.asarray(drops, np.int64)
        rank = np.arange(cand.size) - lo[fc]
        hit = rank < d_arr[fc]
        dropped, again = cand[hit], cand[hit & carries]
        keep = np.ones(len(reg), bool)
        keep[dropped] = False
        self.n_dropped += int(dropped.size - again.size)
        self.n_delayed += int(again.size)
        later = f[again] + 1
        inside = later < n
        self.carry = (reg[again[~inside]], value[again[~inside]])
        again = again[inside]
        return keep, f[again] + 1, reg[again], value[again]
