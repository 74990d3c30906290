"""DeepSHAP attributions per lineage (paper Methods, "Sequence attribution and motif analysis";
Figures 3b, S5, S7): step 2 of the interpretation, rule ``interpret_attributions``.

tangermeme's DeepLIFT/SHAP on the accessibility head summed over the tasks of each lineage
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
    n_warnings: int  # convergence warnings raised by tangermeme

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
    seeded dinucleotide shuffles. Returns hypothetical attributions and convergence deltas.
    The wrapper runs in eval mode (batch norm is then a fixed affine map, linear for DeepLIFT).
    """
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
    proj_sum = (hyp * x.numpy()[:, None]).sum(axis=(2, 3))
    deltas = proj_sum - (y_x - y_ref.mean(axis=1))
    return Attributions(
        hypothetical=hyp,
        deltas=deltas.astype(np.float32),
        output=y_x.astype(np.float32),
        n_warnings=n_warn,
    )


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
        "(mean |output| %.3g); %d tangermeme convergence warnings",
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
