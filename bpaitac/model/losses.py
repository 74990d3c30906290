"""Training objectives of bpAI-TAC and its loss ablations (paper Methods, "Loss ablations").

Notation per track (one OCR x one task): observed insertions ``k_i`` over the ``d`` (binned)
profile positions with ``n = sum_i k_i``; observed quantile-normalised total ``N``; predicted
logits ``z_i`` with ``p_i = softmax(z)_i``; predicted accessibility ``a = log(1 + N_hat)``.

- ``composite_ce``:   ``(1 - lambda) * MSE(a, log(1 + N)) + lambda * CE``,
  ``CE = -sum_i (k_i / n) log p_i`` (every track weighted equally).
- ``composite_mnll``: ``(1 - lambda) * MSE(a, log(1 + N)) + lambda * MNLL``, with the MNLL
  weighting of ``mnll_weight``: ``normalised_total`` (default; the authors' code,
  nuriachandra/bpAITAC ``models/modules.py`` ``MNLLLoss``: ``N * CE``, the quantile-normalised
  total times the cross-entropy, the multinomial constant dropped) or ``insertions`` (the full
  ``-log Mult(k | n, p) = -log(n! / prod k_i!) - sum_i k_i log p_i = const + n * CE``, as
  ChromBPNet and bpnet-lite). The paper writes the MNLL with ``n^obs`` and drops the constant in
  its derivation of the CE; it does not say which total weights the profiles.
- ``poisson`` / ``mse``: act on per-base counts. Predicted rate ``r_i = p_i * exp(a)`` and target
  ``y_i = (k_i / n) * (1 + T)`` (uniform shape when ``n = 0``), ``T`` the measured total: the raw
  insertions ``n`` (``per_base_counts: raw``, default: the paper compares the per-base
  predictions "to the measured count data", the authors' code to the raw per-base counts) or the
  quantile-normalised ``N`` of ``counts.npy`` (``normalised``, which keeps every cell type on the
  scale the accessibility is evaluated on). Both use ``1 + total`` so that ``a`` keeps the
  meaning of the composite losses' accessibility output (``log(1 + total)``) with no clamping.
  ``mse`` compares ``log(1 + r)`` with ``log(1 + y)`` (``per_base_mse: log1p``, default; the
  authors' ``CompositeLossMSE`` uses their ``MSELogs``) or ``r`` with ``y`` (``linear``).

Tracks with no observed insertions (``n = 0``) have an undefined observed profile; the profile
losses give them zero weight and average over the tracks with ``n > 0``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from bpaitac.numeric import bin_to, jensen_shannon

LOSSES = ("composite_ce", "composite_mnll", "poisson", "mse")
PROFILE_LOSSES = ("ce", "mnll", "jsd")
MNLL_WEIGHTS = ("normalised_total", "insertions")
PER_BASE_MSE = ("log1p", "linear")
PER_BASE_COUNTS = ("raw", "normalised")


def _real(x: torch.Tensor) -> torch.Tensor:
    """Compute in at least float32 (bf16/fp16 autocast outputs and integer counts are upcast)."""
    if x.dtype in (torch.float32, torch.float64):
        return x
    return x.float()


def match_bins(profile: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The observed ``profile`` (at least float32) binned to the length of the (already binned)
    ``logits``, by the package's one binning rule (:func:`bpaitac.numeric.bin_to`)."""
    return bin_to(_real(profile), logits.shape[-1])


def _reduce(per_track: torch.Tensor, weight: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_track
    if reduction == "mean":
        return (per_track * weight).sum() / weight.sum().clamp(min=1.0)
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")


def profile_ce(logits: torch.Tensor, obs: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of the observed profile shape ``k / n`` against ``softmax(logits)``."""
    obs = match_bins(obs, logits)
    n = obs.sum(-1)
    nonzero = (n > 0).to(logits.dtype)
    logp = F.log_softmax(_real(logits), dim=-1)
    ce = -(obs * logp).sum(-1) / n.clamp(min=1.0)
    return _reduce(ce, nonzero, reduction)


def multinomial_log_coef(obs: torch.Tensor) -> torch.Tensor:
    """``log(n! / prod_i k_i!)`` per track (the observation-only constant of the MNLL)."""
    obs = _real(obs)
    return torch.lgamma(obs.sum(-1) + 1) - torch.lgamma(obs + 1).sum(-1)


def profile_mnll(logits: torch.Tensor, obs: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Multinomial negative log-likelihood ``-log Mult(k | n, softmax(logits))`` (full NLL)."""
    obs = match_bins(obs, logits)
    n = obs.sum(-1)
    logp = F.log_softmax(_real(logits), dim=-1)
    nll = -multinomial_log_coef(obs) - (obs * logp).sum(-1)
    return _reduce(nll, (n > 0).to(logits.dtype), reduction)


def profile_mnll_normalised(
    logits: torch.Tensor, obs: torch.Tensor, obs_counts: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """The authors' MNLL: ``N * CE`` per track, ``N`` the quantile-normalised total (B, T) and
    the multinomial constant dropped (``mnll_weight: normalised_total``)."""
    ce = profile_ce(logits, obs, reduction="none")
    n = match_bins(obs, logits).sum(-1)
    return _reduce(_real(obs_counts) * ce, (n > 0).to(ce.dtype), reduction)


def profile_jsd_loss(
    logits: torch.Tensor, obs: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Jensen-Shannon divergence (bits, :func:`bpaitac.numeric.jensen_shannon`) of
    ``softmax(logits)`` and ``k / n`` as a loss (the metric of the same maths is
    :func:`bpaitac.numeric.profile_jsd`)."""
    obs = match_bins(obs, logits)
    n = obs.sum(-1, keepdim=True)
    q = obs / n.clamp(min=1.0)
    p = F.softmax(_real(logits), dim=-1)
    return _reduce(jensen_shannon(p, q), (n.squeeze(-1) > 0).to(logits.dtype), reduction)


def mse_log_counts(log_counts: torch.Tensor, obs_counts: torch.Tensor) -> torch.Tensor:
    """Mean squared error of predicted ``log(1 + N_hat)`` and ``log(1 + N)`` over all tracks."""
    return F.mse_loss(_real(log_counts), torch.log1p(_real(obs_counts)))


def per_base_targets(
    obs: torch.Tensor, obs_counts: torch.Tensor, counts: str = "raw"
) -> torch.Tensor:
    """Per-base targets (B, T, L) ``y_i = (k_i / n) * (1 + T)`` of the insertions ``obs``
    (B, T, L); ``T`` the raw total ``n`` (``counts`` ``raw``) or the quantile-normalised total
    ``obs_counts`` (B, T) (``normalised``); a uniform shape where ``n = 0``."""
    if counts not in PER_BASE_COUNTS:
        raise ValueError(f"per_base_counts {counts!r} is not one of {', '.join(PER_BASE_COUNTS)}.")
    obs = _real(obs)
    n = obs.sum(-1, keepdim=True)
    shape = torch.where(n > 0, obs / n.clamp(min=1.0), 1.0 / obs.shape[-1])
    total = n if counts == "raw" else _real(obs_counts).unsqueeze(-1)
    return shape * (1.0 + total)


def poisson_per_base(
    logits: torch.Tensor,
    log_counts: torch.Tensor,
    obs: torch.Tensor,
    obs_counts: torch.Tensor,
    counts: str = "raw",
) -> torch.Tensor:
    """Poisson NLL of per-base counts (``r - y log r``, summed over positions, mean over tracks).

    ``log r_i = log_softmax(z)_i + a``; the ``log(y!)`` term is dropped (no parameters).
    """
    obs = match_bins(obs, logits)
    y = per_base_targets(obs, obs_counts, counts)
    log_rate = F.log_softmax(_real(logits), dim=-1) + _real(log_counts).unsqueeze(-1)
    return (log_rate.exp() - y * log_rate).sum(-1).mean()


def mse_per_base(
    logits: torch.Tensor,
    log_counts: torch.Tensor,
    obs: torch.Tensor,
    obs_counts: torch.Tensor,
    scale: str = "log1p",
    counts: str = "raw",
) -> torch.Tensor:
    """Mean squared error of per-base counts ``r_i = p_i * exp(a)`` against ``y_i``
    (:func:`per_base_targets` with ``counts``): of ``log(1 + r)`` and ``log(1 + y)`` (``scale``
    ``log1p``, the authors' code) or of ``r`` and ``y`` (``linear``)."""
    if scale not in PER_BASE_MSE:
        raise ValueError(f"per_base_mse {scale!r} is not one of {', '.join(PER_BASE_MSE)}.")
    obs = match_bins(obs, logits)
    y = per_base_targets(obs, obs_counts, counts)
    rate = F.softmax(_real(logits), dim=-1) * _real(log_counts).exp().unsqueeze(-1)
    if scale == "log1p":
        return F.mse_loss(torch.log1p(rate), torch.log1p(y))
    return F.mse_loss(rate, y)


def profile_loss(
    name: str, logits: torch.Tensor, obs: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """The profile-only loss ``name`` (``ce``, ``mnll`` or ``jsd``)."""
    if name == "ce":
        return profile_ce(logits, obs, reduction)
    if name == "mnll":
        return profile_mnll(logits, obs, reduction)
    if name == "jsd":
        return profile_jsd_loss(logits, obs, reduction)
    raise ValueError(f"profile loss {name!r} is not one of {', '.join(PROFILE_LOSSES)}.")


def uses_profile(name: str, lam: float) -> bool:
    """Whether the loss trains the profile head (so profile metrics are meaningful)."""
    return name in ("poisson", "mse") or lam > 0


def uses_counts(name: str, lam: float) -> bool:
    """Whether the loss trains the accessibility head."""
    return name in ("poisson", "mse") or lam < 1


def model_loss(
    name: str,
    lam: float,
    logits: torch.Tensor,
    log_counts: torch.Tensor,
    obs: torch.Tensor,
    obs_counts: torch.Tensor,
    *,
    mnll_weight: str = "normalised_total",
    per_base_mse: str = "log1p",
    per_base_counts: str = "raw",
) -> torch.Tensor:
    """The training loss of a catalogue model (``loss`` in :data:`LOSSES`, ``lambda``).

    ``logits`` (B, T, L/b) and ``log_counts`` (B, T) are the model outputs; ``obs`` (B, T, L)
    the observed insertions (binned here to match ``logits``) and ``obs_counts`` (B, T) the
    quantile-normalised totals. Terms with weight 0 are not computed at all, so ``lambda = 0``
    leaves the profile head without gradient and ``lambda = 1`` the accessibility head.
    ``mnll_weight`` (``composite_mnll``), ``per_base_mse`` (``mse``) and ``per_base_counts``
    (``poisson``, ``mse``) are the catalogue entry's keys of the same names; the defaults are
    the schema's (docs/fidelity.md).
    """
    if name == "poisson":
        return poisson_per_base(logits, log_counts, obs, obs_counts, per_base_counts)
    if name == "mse":
        return mse_per_base(logits, log_counts, obs, obs_counts, per_base_mse, per_base_counts)
    if name not in ("composite_ce", "composite_mnll"):
        raise ValueError(f"loss {name!r} is not one of {', '.join(LOSSES)}.")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}.")
    if mnll_weight not in MNLL_WEIGHTS:
        raise ValueError(f"mnll_weight {mnll_weight!r} is not one of {', '.join(MNLL_WEIGHTS)}.")
    total = _real(log_counts).new_zeros(())
    if lam < 1:
        total = total + (1 - lam) * mse_log_counts(log_counts, obs_counts)
    if lam > 0:
        if name == "composite_ce":
            profile = profile_ce(logits, obs)
        elif mnll_weight == "normalised_total":
            profile = profile_mnll_normalised(logits, obs, obs_counts)
        else:
            profile = profile_mnll(logits, obs)
        total = total + lam * profile
    return total
