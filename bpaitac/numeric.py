"""Array maths shared by the model (losses, predictions) and the evaluation: profile binning,
row-wise Pearson R and the Jensen-Shannon divergence.

Every function takes numpy arrays or torch tensors (on any device, with autograd) and returns the
same kind, so training on the GPU and evaluation on the CPU compute one formula. torch is never
imported here: a tensor argument brings it.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np

Array = Any
"""A numpy array or a torch tensor."""


def namespace(x: Array) -> ModuleType:
    """``torch`` for a torch tensor, else ``numpy`` (their shared function names are used)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return torch
    return np


def as_float64(x: Array) -> Array:
    """``x`` in float64, a tensor staying a tensor on its device."""
    if namespace(x) is np:
        return np.asarray(x, dtype=np.float64)
    return x.double()


# --------------------------------------------------------------------------------------------
# Binning


def bin_profile(profile: Array, bin_size: int) -> Array:
    """Sum values (..., L) within bins of ``bin_size`` -> (..., L // bin_size).

    The one edge rule of the package: when ``bin_size`` does not divide ``L`` (20 bp bins of the
    250 bp window) the bins cover the central ``(L // bin_size) * bin_size`` positions and the
    positions left over are dropped, ``(L % bin_size) // 2`` on the left and the rest on the
    right. The network bins its profile logits and the losses and metrics the observed profile
    this way.
    """
    if bin_size == 1:
        return profile
    length = profile.shape[-1]
    n_bins = length // bin_size if bin_size > 0 else 0
    if n_bins < 1:
        raise ValueError(f"bin size {bin_size} does not fit the profile ({length} positions).")
    start = (length - n_bins * bin_size) // 2
    core = profile[..., start : start + n_bins * bin_size]
    return core.reshape(*profile.shape[:-1], n_bins, bin_size).sum(-1)


def bin_to(profile: Array, n_bins: int) -> Array:
    """Bin a profile (..., L) to ``n_bins`` positions with :func:`bin_profile`, bin size
    ``L // n_bins``; raises ValueError when no bin size gives ``n_bins`` bins."""
    length = profile.shape[-1]
    bin_size = length // n_bins if n_bins > 0 else 0
    if bin_size < 1 or length // bin_size != n_bins:
        raise ValueError(
            f"cannot bin a profile of length {length}: it cannot be binned to {n_bins} "
            "positions (a bin size b gives L // b bins over the centre)."
        )
    return bin_profile(profile, bin_size)


# --------------------------------------------------------------------------------------------
# Accessibility scales

SCALES = ("linear", "log")
"""The scales an accessibility metric reads: ``linear`` (the paper's and the authors' code:
predicted counts vs quantile-normalised insertion counts) or ``log`` (``log(1 + x)``)."""


def on_scale(log1p_values: Array, scale: str) -> Array:
    """Accessibility stored as ``log(1 + x)`` (predictions files, prediction loops) on ``scale``:
    ``x = expm1(values)`` in float64 for ``linear``, the values as they are for ``log``."""
    if scale == "log":
        return log1p_values
    if scale == "linear":
        return namespace(log1p_values).expm1(as_float64(log1p_values))
    raise ValueError(f"accessibility scale {scale!r} is not one of {', '.join(SCALES)}.")


# --------------------------------------------------------------------------------------------
# Correlation


def rowwise_pearson(x: Array, y: Array) -> Array:
    """Pearson R of ``x`` and ``y`` along the last axis, in float64.

    NaN where a row has fewer than two values, a non-finite value or a constant side (every
    value equal to its first).
    """
    if tuple(x.shape) != tuple(y.shape):
        raise ValueError(f"rowwise_pearson: need equal shapes, got {x.shape} and {y.shape}.")
    xp = namespace(x)
    x, y = as_float64(x), as_float64(y)
    if x.shape[-1] < 2:
        return x.sum(-1) * xp.nan
    xc = x - x.mean(-1)[..., None]
    yc = y - y.mean(-1)[..., None]
    den = xp.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    constant = (x == x[..., :1]).all(-1) | (y == y[..., :1]).all(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (xc * yc).sum(-1) / den
    return xp.where(constant | ~(den > 0), xp.nan, r)


# --------------------------------------------------------------------------------------------
# Jensen-Shannon divergence


def _kl_bits(a: Array, m: Array) -> Array:
    """``sum a * log2(a / m)`` along the last axis with ``0 log 0 = 0`` (no NaN gradients)."""
    xp = namespace(a)
    present = a > 0
    ratio = xp.where(present, a, 1.0) / xp.where(present, m, 1.0)
    return (a * xp.log2(ratio)).sum(-1)


def jensen_shannon(p: Array, q: Array) -> Array:
    """Jensen-Shannon divergence in bits (base 2, in [0, 1]) of the distributions along the
    last axis of ``p`` and ``q`` (each summing to 1), in their own dtype; the square of
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``."""
    m = 0.5 * (p + q)
    return 0.5 * (_kl_bits(p, m) + _kl_bits(q, m))


def profile_jsd(observed: Array, predicted: Array) -> Array:
    """The profile JSD metric: :func:`jensen_shannon` in bits, float64, between each row of
    ``observed`` (insertion counts or a profile) and ``predicted``, both normalised to sum 1;
    NaN where either row sums to zero."""
    if tuple(observed.shape) != tuple(predicted.shape):
        raise ValueError(
            f"profile_jsd: need equal shapes, got {observed.shape} and {predicted.shape}."
        )
    xp = namespace(observed)
    observed, predicted = as_float64(observed), as_float64(predicted)
    n_obs, n_pred = observed.sum(-1)[..., None], predicted.sum(-1)[..., None]
    ok = (n_obs > 0) & (n_pred > 0)
    p = observed / xp.where(ok, n_obs, 1.0)
    q = predicted / xp.where(ok, n_pred, 1.0)
    return xp.where(ok[..., 0], jensen_shannon(p, q), xp.nan)
