"""DeepSHAP attributions per lineage (paper Methods, "Sequence attribution and motif analysis";
Figures 3b, S5, S7): step 2 of the interpretation, rule ``interpret_attributions``.

DeepLIFT/SHAP (the rules of tangermeme's ``deep_lift_shap``, every lineage in one pass:
:func:`deep_shap`) on the accessibility head summed over the tasks of each lineage
(:class:`LineageAccessibility`), with dinucleotide-shuffled references drawn once per sequence
from a seed and shared by every lineage and model. The Tn5 bias is not an input of the
accessibility head, so attributions are those of the model with the bias set to zero.
Convergence deltas (sum of attributions minus the mean output difference to the references)
are computed for every sequence and lineage and stored.
"""

from __future__ import annotations

import logging
import os
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from bpaitac.data.sequence import one_hot
from bpaitac.evaluate.metrics import lineage_means, load_predictions
from bpaitac.interpret.regions import selected_regions
from bpaitac.interpret.tables import load_test_split, read_tsv, save_npz
from bpaitac.io import InputError

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Lineage targets and the DeepSHAP wrapper


def lineage_task_matrix(
    targets: Sequence[str], lineage_of: Mapping[str, str], lineages: Sequence[str]
) -> np.ndarray:
    """0/1 matrix (T, n_lineages): which model task belongs to which lineage.

    A task named like a cell type belongs to that cell type's lineage; a task named like a
    lineage (lineage-target models) is that lineage.
    """
    mat = np.zeros((len(targets), len(lineages)), dtype=np.float32)
    col = {lin: j for j, lin in enumerate(lineages)}
    for i, t in enumerate(targets):
        lin = t if t in col else lineage_of.get(t)
        if lin not in col:
            raise InputError(
                f"model task {t!r} is neither a cell type of the table nor a lineage in use "
                f"({', '.join(lineages)}); check `celltypes:` / `celltypes_per_lineage`."
            )
        mat[i, col[lin]] = 1.0
    empty = [lineages[j] for j in np.flatnonzero(mat.sum(axis=0) == 0)]
    if empty:
        raise InputError(f"lineage(s) {empty} have no task in the model; check the targets.")
    return mat


class LineageAccessibility(nn.Module):
    """Wrap a bpAI-TAC network: the accessibility head's output summed over each lineage's tasks
    (paper: "summing the predictions for cell types in each lineage before applying DeepSHAP").

    ``forward(x)`` returns (B, n_lineages): sums of the linear predicted accessibility for heads
    with ``acc_output: relu_linear`` (the authors' code), of ``log(1 + accessibility)`` for
    ``log`` heads (:meth:`bpaitac.model.network.BpAITAC.accessibility_output`). No bias is
    passed (bias zero); the sum is a matrix product, which DeepLIFT treats exactly as the
    linear operation it is.
    """

    def __init__(self, model: nn.Module, task_matrix: np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("weights", torch.as_tensor(task_matrix, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.accessibility_output(x) @ self.weights


@dataclass(frozen=True)
class Attributions:
    """DeepSHAP results for N sequences and K lineages."""

    hypothetical: np.ndarray  # (N, K, 4, L) float32
    deltas: np.ndarray  # (N, K) float32: sum(attr) - mean_r(f(x) - f(r))
    output: np.ndarray  # (N, K) float32: wrapper output f(x)
    n_warnings: int  # pairs (or tangermeme batches) with a convergence delta over the threshold

    def projected(self, onehot: np.ndarray) -> np.ndarray:
        """Attributions of the bases present (N, K, 4, L) for one-hot sequences (N, 4, L)."""
        return self.hypothetical * onehot[:, None]


def reference_seeds(x: torch.Tensor, seed: int) -> list[int]:
    """One shuffle seed per one-hot sequence of ``x`` (N, 4, L): ``seed`` mixed with a CRC-32
    of the sequence itself, so a sequence gets the same references whatever else is in the
    batch and in whichever order the regions were ranked."""
    rows = x.detach().to(torch.uint8).cpu().numpy()
    return [(int(seed) * 1_000_003 + zlib.crc32(row.tobytes())) % 2**32 for row in rows]


def references_for(x: torch.Tensor, n_shuffles: int, seed: int) -> torch.Tensor:
    """Dinucleotide-shuffled references (N, n_shuffles, 4, L) of one-hot ``x`` (N, 4, L),
    seeded per sequence (:func:`reference_seeds`)."""
    from tangermeme.ersatz import dinucleotide_shuffle

    seeds = reference_seeds(x, seed)
    return dinucleotide_shuffle(x, n=n_shuffles, random_state=seeds, allow_N=True)


# Nonlinear module types with a DeepLIFT rule in :func:`deep_shap` (the rescale rule for ReLU,
# DeepSHAP's max-pool rule); the network's other modules (convolutions, eval-mode batch norm,
# linear layers, sums, flatten, identity) are linear. A module of a type tangermeme has a rule
# for but :func:`deep_shap` does not is refused when it runs (:class:`_PairedDeepLift`).
RESCALED = (nn.ReLU, nn.MaxPool1d)
_REFUSED = (
    nn.ReLU6,
    nn.RReLU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.GLU,
    nn.ELU,
    nn.LeakyReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Softshrink,
    nn.LogSigmoid,
    nn.PReLU,
    nn.MaxPool2d,
    nn.Softmax,
    nn.LayerNorm,
    nn.AdaptiveMaxPool1d,
)
# |x - r| below which the ReLU rescale rule falls back to the gradient at x (tangermeme's value).
RESCALE_EPS = 1e-6


def deep_shap(
    wrapper: nn.Module,
    x: torch.Tensor,
    *,
    n_shuffles: int,
    seed: int,
    batch_size: int = 64,
    device: str = "cpu",
    warning_threshold: float = 1e-3,
    references: torch.Tensor | None = None,
) -> Attributions:
    """Hypothetical DeepLIFT/SHAP attributions of every output of ``wrapper`` for ``x``.

    ``x`` is one-hot (N, 4, L) float. ``references`` (N, S, 4, L) default to ``n_shuffles``
    seeded dinucleotide shuffles (:func:`references_for`). The wrapper runs in eval mode (batch
    norm is then a fixed affine map, linear for DeepLIFT). ``batch_size`` counts
    sequence-reference pairs, as in tangermeme.

    The same attributions as tangermeme's ``deep_lift_shap`` called once per output
    (:func:`deep_shap_tangermeme`; ``tests/test_attribution.py`` holds them equal), at a
    fraction of the cost. Why not tangermeme itself: its API has no option that avoids the
    redundant work, which is (1) every pair runs the input and the reference through the
    network (2 rows per pair), so the input's forward and backward pass is repeated for each of
    the S references; (2) one call explains one output, so the forward pass is repeated for
    each of the K outputs; (3) the outputs of the input and the references, needed for the
    convergence deltas, are not returned and cost another 1 + S forward rows. Here the input
    runs forward once (no gradient), recording the inputs of its nonlinear modules; the S
    references then run forward once with each nonlinear module's output replaced by a
    surrogate of equal value whose gradient is the DeepLIFT multiplier of the pair
    (:func:`_relu_surrogate`, :func:`_maxpool_surrogate`); one backward pass per output over
    the S reference rows gives the multipliers of every pair, and the outputs of the same
    passes give the convergence deltas of every pair at no extra cost.

    The rules are the rescale rule for ``nn.ReLU`` (multiplier ``(relu(x) - relu(r)) / (x -
    r)``, the gradient at ``x`` where ``|x - r| < 1e-6``) and DeepSHAP's max-pool rule for
    ``nn.MaxPool1d`` (the change of each pooled output routed back to the positions that won
    the max in the input and in the reference, divided by the change of each input position;
    the gradient at ``x`` where it does not change), both as in tangermeme 1.6.0. Other
    nonlinear module types are refused; functional nonlinearities (``torch.exp``) get no rule,
    as in tangermeme, and show up as large convergence deltas (their plain gradient is then
    taken at the reference here, at the input in tangermeme: both are wrong). A module called
    more than once per forward pass is supported. Inputs may hold N (all-zero columns), which
    tangermeme refuses: an N column gets no attribution, so the stored deltas then include what
    the references' bases at those columns contribute.

    ``n_warnings`` counts the (sequence, reference, output) pairs whose convergence delta
    ``|f(x) - f(r) - sum((x - r) * multipliers)|`` exceeds ``warning_threshold`` (tangermeme
    checks the same quantity per pair and warns once per batch).
    """
    from bpaitac.model.network import resolve_device

    dev = resolve_device(device)
    if references is None:
        references = references_for(x, n_shuffles, seed)
    n, s = x.shape[0], references.shape[1]
    if references.shape[0] != n or references.shape[2:] != x.shape[1:]:
        raise ValueError(
            f"references {tuple(references.shape)} do not match inputs {tuple(x.shape)}: "
            "expected (N, S, 4, L)."
        )
    wrapper = wrapper.eval().to(dev)
    per_batch = max(1, int(batch_size) // s)
    hyp, out, ref_mean, n_warn = [], [], [], 0
    with _PairedDeepLift(wrapper) as paired:
        for i in range(0, n, per_batch):
            xb = x[i : i + per_batch].to(dev, torch.float32)
            rb = references[i : i + per_batch].to(dev, torch.float32)
            h, y_x, y_r, pair_delta = paired.attribute(xb, rb)
            hyp.append(h.cpu())
            out.append(y_x.cpu())
            ref_mean.append(y_r.mean(dim=1).cpu())
            n_warn += int((pair_delta.abs() > warning_threshold).sum())
    return _with_deltas(
        torch.cat(hyp).numpy(),
        x,
        torch.cat(out).double().numpy(),
        torch.cat(ref_mean).double().numpy(),
        n_warn,
    )


def _with_deltas(
    hypothetical: np.ndarray,
    x: torch.Tensor,
    y_x: np.ndarray,
    y_ref_mean: np.ndarray,
    n_warnings: int,
) -> Attributions:
    """:class:`Attributions` of hypothetical attributions (N, K, 4, L) of one-hot ``x``
    (N, 4, L), with the convergence deltas ``sum(attr) - (f(x) - mean_r f(r))`` from the
    outputs ``y_x`` (N, K) and the mean reference outputs ``y_ref_mean`` (N, K)."""
    proj_sum = (hypothetical * x.numpy()[:, None]).sum(axis=(2, 3), dtype=np.float64)
    return Attributions(
        hypothetical=hypothetical.astype(np.float32, copy=False),
        deltas=(proj_sum - (y_x - y_ref_mean)).astype(np.float32),
        output=y_x.astype(np.float32),
        n_warnings=n_warnings,
    )


class _PairedDeepLift:
    """Forward hooks on the :data:`RESCALED` modules of a model (a context manager); a module
    of a type in ``_REFUSED`` that runs during an attribution pass raises ``ValueError``.

    In ``"input"`` mode a hook records the module's input (and, for max-pools, the winning
    positions) of each call; in ``"reference"`` mode it replaces the module's output by the
    surrogate whose gradient is the DeepLIFT multiplier against the recorded input, with the
    references of each input in consecutive rows (B * S rows for B inputs).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.mode = "off"
        self.n_refs = 1
        self.saved: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}
        self.calls: dict[int, int] = {}
        self.handles: list[Any] = []

    def __enter__(self) -> _PairedDeepLift:
        self.handles = [
            m.register_forward_hook(self._hook)
            for m in self.model.modules()
            if isinstance(m, RESCALED + _REFUSED)
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()
        self.handles, self.saved = [], {}

    def _run(self, mode: str, x: torch.Tensor) -> torch.Tensor:
        self.mode, self.calls = mode, {}
        try:
            return self.model(x)
        finally:
            self.mode = "off"

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor):
        if self.mode == "off":
            return None
        if not isinstance(module, RESCALED):
            raise ValueError(
                f"deep_shap: a {type(module).__name__} module runs in the attributed model and "
                f"has no DeepLIFT rule here (supported: {', '.join(t.__name__ for t in RESCALED)});"
                " use deep_shap_tangermeme for it."
            )
        call = self.calls.get(id(module), 0)
        self.calls[id(module)] = call + 1
        key = (id(module), call)
        a = inputs[0]
        if self.mode == "input":
            if isinstance(module, nn.MaxPool1d):
                self.saved[key] = (a.detach(), output.detach(), _pool_indices(module, a.detach()))
            else:
                self.saved[key] = (a.detach(),)
            return None
        if isinstance(module, nn.MaxPool1d):
            return _maxpool_surrogate(module, *self.saved[key], a, output, self.n_refs)
        return _relu_surrogate(self.saved[key][0], a, output, self.n_refs)

    def attribute(
        self, x: torch.Tensor, refs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Hypothetical attributions (B, K, 4, L) averaged over the references, the outputs
        f(x) (B, K) and f(r) (B, S, K), and the convergence delta of every pair (B, S, K), for
        inputs ``x`` (B, 4, L) and references ``refs`` (B, S, 4, L)."""
        b, s = refs.shape[:2]
        self.saved = {}
        with torch.no_grad():
            y_x = self._run("input", x)
        r = refs.reshape(b * s, *refs.shape[2:]).detach().requires_grad_(True)
        self.n_refs = s
        with torch.enable_grad():
            y_r = self._run("reference", r)
            k = y_r.shape[1]
            mult = [
                torch.autograd.grad(y_r[:, j].sum(), r, retain_graph=j < k - 1)[0] for j in range(k)
            ]
        self.saved = {}
        m = torch.stack(mult, dim=1).reshape(b, s, k, *refs.shape[2:])  # (B, S, K, 4, L)
        rr = refs[:, :, None]
        # Hypothetical contribution of base i: the multiplier of i minus that of the reference.
        hyp = (m - (rr * m).sum(dim=3, keepdim=True)).mean(dim=1)
        y_r = y_r.detach().reshape(b, s, k)
        input_diff = ((x[:, None, None] - rr) * m).sum(dim=(3, 4))
        pair_delta = (y_x[:, None] - y_r) - input_diff
        return hyp, y_x, y_r, pair_delta


def _pool_indices(module: nn.MaxPool1d, a: torch.Tensor) -> torch.Tensor:
    """Positions (B, C, L_out) that win each window of a max-pool over ``a`` (B, C, L)."""
    return nn.functional.max_pool1d(
        a,
        module.kernel_size,
        module.stride,
        module.padding,
        module.dilation,
        module.ceil_mode,
        return_indices=True,
    )[1]


def _relu_surrogate(
    a_x: torch.Tensor, a: torch.Tensor, out: torch.Tensor, n_refs: int
) -> torch.Tensor:
    """``out`` (= ReLU(a), B * S rows) with the rescale multiplier of each pair as gradient:
    ``(relu(a_x) - relu(a)) / (a_x - a)``, or ``1[a_x > 0]`` where ``|a_x - a| < 1e-6``;
    ``a_x`` (B, ...) holds the input's values, repeated over its S references."""
    shape = (a_x.shape[0], n_refs, *a_x.shape[1:])
    ax, ar = a_x.unsqueeze(1), a.detach().reshape(shape)
    diff = ax - ar
    close = diff.abs() < RESCALE_EPS
    secant = (ax.clamp_min(0) - ar.clamp_min(0)) / diff.masked_fill(close, 1.0)
    mult = torch.where(close, (ax > 0).to(a.dtype), secant).reshape(a.shape)
    return out.detach() + mult * (a - a.detach())


def _maxpool_surrogate(
    module: nn.MaxPool1d,
    a_x: torch.Tensor,
    out_x: torch.Tensor,
    idx_x: torch.Tensor,
    a: torch.Tensor,
    out: torch.Tensor,
    n_refs: int,
) -> torch.Tensor:
    """``out`` (= MaxPool(a), B * S rows) with DeepSHAP's max-pool multipliers as gradient.

    With ``m = max(pool(x), pool(r))``, the change ``m - pool(r)`` is routed back to the
    positions that win in ``x`` and ``pool(x) - m`` to those that win in ``r``; each input
    position's share is divided by its change ``x - r`` (where it does not change, the gradient
    at ``x``: the routing of ``x``'s winners). The surrogate is the transpose of that linear map
    applied to ``a - a.detach()`` (zero), so its value is ``out`` and its gradient the map.
    """
    b, s = a_x.shape[0], n_refs
    ar = a.detach().reshape(b, s, *a.shape[1:])
    o_r = out.detach().reshape(b, s, *out.shape[1:])
    idx_r = _pool_indices(module, a.detach()).reshape(o_r.shape)
    ix = idx_x.unsqueeze(1).expand(o_r.shape)
    o_x = out_x.unsqueeze(1)
    top = torch.maximum(o_x, o_r)
    diff = a_x.unsqueeze(1) - ar
    same = diff == 0
    inv = torch.where(same, 0.0, 1.0 / diff.masked_fill(same, 1.0))
    z = (a - a.detach()).reshape(ar.shape)
    scaled = z * inv
    gathered = (
        (top - o_r) * scaled.gather(-1, ix)
        + (o_x - top) * scaled.gather(-1, idx_r)
        + (z * same).gather(-1, ix)
    )
    return out.detach() + gathered.reshape(out.shape)


def deep_shap_tangermeme(
    wrapper: nn.Module,
    x: torch.Tensor,
    *,
    n_shuffles: int,
    seed: int,
    batch_size: int = 64,
    device: str = "cpu",
    warning_threshold: float = 1e-3,
    references: torch.Tensor | None = None,
) -> Attributions:
    """:func:`deep_shap` through tangermeme's ``deep_lift_shap``, one call per output: the
    reference the fused implementation is tested against (and the path for module types it
    refuses). ``n_warnings`` here counts tangermeme's convergence warnings (one per batch)."""
    from tangermeme.deep_lift_shap import deep_lift_shap

    from bpaitac.model.network import resolve_device

    device = str(resolve_device(device))  # cpu, cuda or auto -> what tangermeme moves to
    if references is None:
        references = references_for(x, n_shuffles, seed)
    wrapper = wrapper.eval()
    with torch.no_grad():
        y_x = _batched(wrapper, x, batch_size, device)
        flat = references.reshape(-1, *x.shape[1:])
        y_ref = _batched(wrapper, flat, batch_size, device).reshape(
            x.shape[0], references.shape[1], -1
        )
    n_out = y_x.shape[1]
    hyp = np.empty((x.shape[0], n_out, *x.shape[1:]), dtype=np.float32)
    n_warn = 0
    for k in range(n_out):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            attr = deep_lift_shap(
                wrapper,
                x,
                target=k,
                references=references,
                hypothetical=True,
                batch_size=batch_size,
                warning_threshold=warning_threshold,
                device=device,
                random_state=seed,
            )
        n_warn += sum("Convergence deltas" in str(w.message) for w in caught)
        hyp[:, k] = attr.float().numpy()
    return _with_deltas(hyp, x, y_x, y_ref.mean(axis=1), n_warn)


def _batched(module: nn.Module, x: torch.Tensor, batch_size: int, device: str) -> np.ndarray:
    module = module.to(device)
    out = [
        module(x[i : i + batch_size].to(device)).float().cpu().numpy()
        for i in range(0, x.shape[0], batch_size)
    ]
    return np.concatenate(out).astype(np.float64)


# --------------------------------------------------------------------------------------------
# The step


def run_attributions(
    *,
    model_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    regions_tsv: str | os.PathLike,
    seq_path: str | os.PathLike,
    ocrs_path: str | os.PathLike,
    celltypes: pd.DataFrame,
    lineages: Sequence[str],
    out_npz: str | os.PathLike,
    n_shuffles: int,
    seed: int,
    batch_size: int,
    device: str,
    warning_threshold: float,
) -> dict[str, Any]:
    """DeepSHAP of the accessibility head summed per lineage for the selected regions."""
    from bpaitac.model.network import load_model

    regions = selected_regions(read_tsv(regions_tsv, ["peak_id", "selected", "rank"]))
    seqs, peak_ids = load_test_split(seq_path, ocrs_path)
    rows = pd.Index(peak_ids).get_indexer(regions["peak_id"].astype(str))
    if (rows < 0).any():
        raise InputError(f"{regions_tsv}: selected OCRs missing from {ocrs_path}; rerun regions.")
    pred = load_predictions(predictions_path)
    lineage_of = dict(zip(celltypes["celltype"], celltypes["lineage"]))
    tasks = lineage_task_matrix(pred.targets, lineage_of, lineages)
    model, _ = load_model(model_path, device)
    if model.spec.n_tasks != len(pred.targets):
        raise InputError(
            f"{model_path} has {model.spec.n_tasks} tasks but {predictions_path} "
            f"{len(pred.targets)} targets; rerun the prediction of this model."
        )
    sel = np.asarray(seqs[rows])
    x = torch.from_numpy(one_hot(sel))
    wrapper = LineageAccessibility(model, tasks)
    res = deep_shap(
        wrapper,
        x,
        n_shuffles=n_shuffles,
        seed=seed,
        batch_size=batch_size,
        device=device,
        warning_threshold=warning_threshold,
    )
    max_delta = float(np.abs(res.deltas).max()) if res.deltas.size else 0.0
    spread = float(np.abs(res.output).mean()) if res.output.size else 0.0
    log.info(
        "%s: %d regions x %d lineages, %d shuffles; max |convergence delta| %.3g "
        "(mean |output| %.3g); %d pairs over the convergence threshold",
        model_path,
        len(rows),
        len(lineages),
        n_shuffles,
        max_delta,
        spread,
        res.n_warnings,
    )
    if max_delta > warning_threshold:
        log.warning(
            "max |convergence delta| %.3g exceeds interpret.deepshap.warning_threshold %.3g",
            max_delta,
            warning_threshold,
        )
    prow = pd.Index(pred.peak_id).get_indexer(regions["peak_id"].astype(str))
    if (prow < 0).any():
        raise InputError(f"{predictions_path}: lacks selected OCRs; rerun its prediction.")
    pred_lin, names = lineage_means(pred.acc_pred[prow], pred.targets, lineage_of, lineages)
    obs_lin, _ = lineage_means(pred.acc_obs[prow], pred.targets, lineage_of, lineages)
    idx = [names.index(lin) for lin in lineages]
    save_npz(
        out_npz,
        peak_id=regions["peak_id"].astype(str).to_numpy(),
        lineages=np.asarray(lineages, dtype=str),
        seq=sel.astype(np.uint8),
        hypothetical=res.hypothetical,
        deltas=res.deltas,
        output=res.output,
        pred_lineage=pred_lin[:, idx].astype(np.float32),
        obs_lineage=obs_lin[:, idx].astype(np.float32),
        max_abs_delta=np.float32(max_delta),
        n_warnings=np.int64(res.n_warnings),
        n_shuffles=np.int64(n_shuffles),
    )
    return {"max_abs_delta": max_delta, "n_warnings": res.n_warnings, "n_regions": len(rows)}
