"""Pure series arithmetic for the charts: TensorBoard's debiased EMA, and M4 in numpy for the
few series the store cannot bucket itself (the smoothed loss, JSON-held figures)."""

from __future__ import annotations

import math

import numpy as np


def ema(values, weight: float, state: tuple[float, int] = (0.0, 0)) -> tuple[np.ndarray, tuple[float, int]]:
    """TensorBoard's smoothing: s_t = w·s_(t-1) + (1 − w)·x_t from s = 0, divided by 1 − w^(t+1)
    so the start is not pulled towards zero. `state` (the last raw s and how many points it
    covers) continues a series where a previous call stopped; the new state comes back.

    Computed in blocks short enough that w^-k stays finite: within a block,
    s_(k+j) = w^(j+1)·s_(k-1) + (1 − w)·w^j·Σ_(i≤j) w^(-i)·x_(k+i), one cumsum per block."""
    x = np.asarray(values, dtype=np.float64)
    carry, count = state
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight {weight}: expected 0 <= weight < 1")
    if weight == 0.0 or len(x) == 0:
        return x.copy(), ((float(x[-1]), count + len(x)) if len(x) else state)
    block = max(1, int(500 / -math.log(weight)))
    raw = np.empty_like(x)
    for start in range(0, len(x), block):
        chunk = x[start:start + block]
        j = np.arange(len(chunk), dtype=np.float64)
        grow = weight ** -j
        raw[start:start + len(chunk)] = (weight ** (j + 1)) * carry + (1 - weight) * (weight ** j) * np.cumsum(grow * chunk)
        carry = float(raw[start + len(chunk) - 1])
    t = np.arange(count + 1, count + len(x) + 1, dtype=np.float64)
    return raw / (1.0 - weight ** t), (carry, count + len(x))


def m4(xs, ys, buckets: int, bounds: tuple[float, float] | None = None) -> tuple[list[float], list[float]]:
    """Per bucket of x (x in increasing order): first, min, max and last, each at its own x.
    The oracle of the store's SQL M4 and the downsampler of series read whole."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if len(x) <= 4 * buckets:
        return x.tolist(), y.tolist()
    x0, x1 = bounds or (float(x[0]), float(x[-1]))
    index = np.minimum(((x - x0) / ((x1 - x0) or 1.0) * buckets).astype(np.int64), buckets - 1)
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    ends = np.r_[starts[1:], len(x)] - 1
    lows = starts + np.array([np.argmin(y[a:b + 1]) for a, b in zip(starts, ends)], dtype=np.int64)
    highs = starts + np.array([np.argmax(y[a:b + 1]) for a, b in zip(starts, ends)], dtype=np.int64)
    keep = np.unique(np.concatenate([starts, ends, lows, highs]))
    return x[keep].tolist(), y[keep].tolist()
