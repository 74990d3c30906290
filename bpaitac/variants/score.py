"""Score variants with every seed of a trained model: rule ``score_variants``.

For each variant (``bpaitac.variants.inputs``) and each seed, the ref and alt windows
(``bpaitac.variants.windows``) are predicted on both strands with tangermeme's variant-effect
functions, at the evaluation batch size on the configured device. The two strands are averaged:
the predicted ``log(1 + accessibility)`` as it is, the profile as probabilities (the softmax of
the profile logits with the bias model left out, i.e. bias zero; the reverse strand's profile
flipped back). Per cell type (model task) and per lineage:

- ``log2fc``: log2 fold change alt / ref of ``1 + predicted accessibility`` (the model's own
  scale); a lineage's accessibility is the mean of its cell types' linear predictions
  (:func:`bpaitac.evaluate.metrics.lineage_means`);
- ``diff``: alt - ref of the predicted accessibility (linear insertions in the central window);
- ``jsd``: Jensen-Shannon divergence (bits) between the ref and alt profiles; a lineage's
  profile is the mean of its cell types' profiles.

Each is summarised over seeds by its mean and sample sd (NaN with one seed). Outputs: the tidy
table (one row per variant x target), the per-variant summary (every input variant, with its
status; the lineage of largest |log2fc|) and the ref/alt lineage profiles of the top variants
(for the figure).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bpaitac.data.sequence import one_hot
from bpaitac.evaluate.metrics import lineage_means
from bpaitac.interpret.attribution import lineage_task_matrix
from bpaitac.io import InputError, atomic_path
from bpaitac.numeric import jensen_shannon
from bpaitac.variants.inputs import (
    check_against_genome,
    read_variant_file,
)
from bpaitac.variants.windows import (
    Group,
    VariantSet,
    build_groups,
    genome_fetcher,
    reverse_events,
    variant_set,
)

log = logging.getLogger(__name__)

EFFECTS = ("log2fc", "diff", "jsd")
TIDY_COLUMNS = (
    "variant_id",
    "name",
    "chrom",
    "pos",
    "ref",
    "alt",
    "model",
    "level",
    "target",
    "ref_acc_mean",
    "alt_acc_mean",
    *(f"{e}_{s}" for e in EFFECTS for s in ("mean", "sd")),
    "n_seeds",
)
SUMMARY_COLUMNS = (
    "variant_id",
    "name",
    "chrom",
    "pos",
    "ref",
    "alt",
    "line",
    "status",
    "kind",
    "model",
    "max_abs_log2fc",
    "top_lineage",
    "top_log2fc_mean",
    "top_log2fc_sd",
    "max_jsd",
    "max_jsd_lineage",
    "n_seeds",
)
CHUNK_BATCHES = 2
"""Variants predicted together: this many evaluation batches (bounds the profiles held)."""


def _probabilities(y: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """tangermeme ``predict`` post-processing, on the device: profile logits -> probabilities."""
    logits, log_counts = y
    return torch.softmax(logits.float(), dim=-1), log_counts.float()


def strand_predictions(
    model: torch.nn.Module,
    group: Group,
    *,
    reverse: bool,
    batch_size: int,
    device: torch.device,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(ref, alt) predictions ``[profile probabilities (n, T, P), log counts (n, T)]`` of one
    group on one strand, in the group's order (CPU tensors). The reverse strand's profiles are
    flipped back to forward positions."""
    from tangermeme.predict import predict
    from tangermeme.variant_effect import deletion_effect, insertion_effect, substitution_effect

    x = one_hot(torch.from_numpy(group.x)).to(torch.int8)  # cast to float on the device
    events = torch.from_numpy(reverse_events(group) if reverse else group.events)
    if reverse:
        x = x.flip(1, 2)  # channels A,C,G,T reversed = complemented
    kw = {
        "batch_size": batch_size,
        "device": device,
        "dtype": torch.float32,
        "additional_func_kwargs": {"func": _probabilities},
    }
    if group.kind == "substitution":
        ref, alt = substitution_effect(model, x, events, **kw)
    elif group.kind == "deletion":
        ref, alt = deletion_effect(model, x, events, left=reverse, **kw)
    elif group.kind == "insertion":
        ref, alt = insertion_effect(model, x, events, left=reverse, **kw)
    else:  # complex: both windows built (bpaitac.variants.windows), predicted as they are
        x_alt = one_hot(torch.from_numpy(group.x_alt)).to(torch.int8)
        if reverse:
            x_alt = x_alt.flip(1, 2)
        opts = {k: v for k, v in kw.items() if k != "additional_func_kwargs"}
        ref = predict(model, x, func=_probabilities, **opts)
        alt = predict(model, x_alt, func=_probabilities, **opts)
    if reverse:
        ref = [ref[0].flip(-1), ref[1]]
        alt = [alt[0].flip(-1), alt[1]]
    return list(ref), list(alt)


def predict_chunk(
    model: torch.nn.Module,
    groups: Sequence[Group],
    positions: Mapping[int, int],
    n: int,
    task_weights: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    keep_profiles: bool = False,
) -> dict[str, np.ndarray]:
    """One seed's strand-averaged predictions of ``n`` variants (the groups' rows; ``positions``
    maps a :class:`VariantSet` row to its place in the chunk).

    Returns ``lc_ref``, ``lc_alt`` (n, T) log(1 + accessibility), ``jsd`` (n, T) and
    ``jsd_lineage`` (n, K) in bits; with ``keep_profiles`` also ``profile_ref``,
    ``profile_alt`` (n, K, P) lineage profiles. ``task_weights`` (T, K): each lineage's mean
    over its tasks.
    """
    t, k = task_weights.shape
    out = {
        "lc_ref": np.zeros((n, t), np.float32),
        "lc_alt": np.zeros((n, t), np.float32),
        "jsd": np.zeros((n, t), np.float32),
        "jsd_lineage": np.zeros((n, k), np.float32),
    }
    for group in groups:
        rows = np.array([positions[int(i)] for i in group.index])
        fwd = strand_predictions(model, group, reverse=False, batch_size=batch_size, device=device)
        rev = strand_predictions(model, group, reverse=True, batch_size=batch_size, device=device)
        probs, counts = [], []
        for allele in (0, 1):
            probs.append(0.5 * (fwd[allele][0].double() + rev[allele][0].double()))
            counts.append(0.5 * (fwd[allele][1] + rev[allele][1]))
        out["lc_ref"][rows], out["lc_alt"][rows] = counts[0].numpy(), counts[1].numpy()
        out["jsd"][rows] = jensen_shannon(probs[0], probs[1]).numpy()
        w = task_weights.double()
        lineage = [torch.einsum("ntp,tk->nkp", p, w) for p in probs]
        out["jsd_lineage"][rows] = jensen_shannon(lineage[0], lineage[1]).numpy()
        if keep_profiles:
            for name, prof in zip(("profile_ref", "profile_alt"), lineage):
                if name not in out:
                    out[name] = np.zeros((n, k, prof.shape[-1]), np.float32)
                out[name][rows] = prof.float().numpy()
    return out


def load_seed_models(
    paths: Sequence[str | os.PathLike], device: torch.device
) -> tuple[list[torch.nn.Module], list[str]]:
    """Load every seed's ``model.pt`` on ``device``; returns (models, target names), checking
    that all seeds predict the same targets."""
    from bpaitac.model.network import load_model

    if not paths:
        raise InputError("no trained model to score variants with; check `variants.models`.")
    models, targets = [], None
    for path in paths:
        model, spec = load_model(path, device)
        names = [str(t) for t in spec.get("targets", [])]
        if len(names) != model.spec.n_tasks:
            raise InputError(
                f"{path}: the model file names {len(names)} targets for {model.spec.n_tasks} "
                "tasks; retrain it with the training rule."
            )
        if targets is not None and names != targets:
            raise InputError(f"{path}: its targets differ from {paths[0]}'s; retrain the seeds.")
        targets = names
        models.append(model)
    return models, targets


def run_predictions(
    models: Sequence[torch.nn.Module],
    variants: VariantSet,
    fetch,
    task_weights: np.ndarray,
    *,
    index: np.ndarray | None = None,
    batch_size: int,
    device: torch.device,
    keep_profiles: bool = False,
) -> list[dict[str, np.ndarray]]:
    """:func:`predict_chunk` of every seed over ``variants[index]`` (default all), chunk by
    chunk (:data:`CHUNK_BATCHES` evaluation batches); one dict per seed, rows in index order."""
    index = np.arange(len(variants)) if index is None else np.asarray(index)
    flank = models[0].spec.seq_len // 2
    weights = torch.as_tensor(task_weights, dtype=torch.float32)
    chunk = max(1, CHUNK_BATCHES * batch_size)
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in models]
    for start in range(0, len(index), chunk):
        rows = index[start : start + chunk]
        groups = build_groups(variants, rows, fetch, flank)
        positions = {int(i): p for p, i in enumerate(rows)}
        for s, model in enumerate(models):
            parts[s].append(
                predict_chunk(
                    model,
                    groups,
                    positions,
                    len(rows),
                    weights,
                    batch_size=batch_size,
                    device=device,
                    keep_profiles=keep_profiles,
                )
            )
        log.info("scored %d of %d variants", min(start + chunk, len(index)), len(index))
    if not len(index):
        return [{} for _ in models]
    return [{k: np.concatenate([p[k] for p in seed]) for k in seed[0]} for seed in parts]


def _seed_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample sd over the first axis (seeds); sd NaN for one seed."""
    mean = values.mean(axis=0)
    sd = values.std(axis=0, ddof=1) if len(values) > 1 else np.full_like(mean, np.nan)
    return mean, sd


def variant_effects(
    seeds: Sequence[Mapping[str, np.ndarray]],
    targets: Sequence[str],
    lineage_of: Mapping[str, str],
    lineages: Sequence[str],
) -> dict[str, dict[str, np.ndarray]]:
    """Per level (``celltype``: the model's tasks, ``lineage``), each effect's seed mean and sd
    (N, targets) and the mean ref/alt accessibility; from :func:`run_predictions` output."""
    per: dict[str, dict[str, list[np.ndarray]]] = {"celltype": {}, "lineage": {}}
    for seed in seeds:
        lin = {}
        for allele in ("ref", "alt"):
            lin[allele], names = lineage_means(seed[f"lc_{allele}"], targets, lineage_of, lineages)
            if list(names) != list(lineages):
                raise InputError(f"lineages {names} of the model differ from {list(lineages)}.")
        levels = {
            "celltype": (seed["lc_ref"].astype(np.float64), seed["lc_alt"], seed["jsd"]),
            "lineage": (lin["ref"], lin["alt"], seed["jsd_lineage"]),
        }
        for level, (ref, alt, jsd) in levels.items():
            values = {
                "log2fc": (alt - ref) / math.log(2),
                "diff": np.expm1(alt) - np.expm1(ref),
                "jsd": jsd,
                "ref_acc": np.expm1(ref),
                "alt_acc": np.expm1(alt),
            }
            for key, v in values.items():
                per[level].setdefault(key, []).append(np.asarray(v, dtype=np.float64))
    out: dict[str, dict[str, np.ndarray]] = {}
    for level, values in per.items():
        out[level] = {}
        for key, stack in values.items():
            mean, sd = _seed_stats(np.stack(stack))
            out[level][f"{key}_mean"] = mean
            if key in EFFECTS:
                out[level][f"{key}_sd"] = sd
    return out


def tidy_table(
    variants: pd.DataFrame,
    effects: Mapping[str, Mapping[str, np.ndarray]],
    names: Mapping[str, Sequence[str]],
    model: str,
    n_seeds: int,
) -> pd.DataFrame:
    """One row per scored variant x target (:data:`TIDY_COLUMNS`); ``variants`` the ``ok``
    rows of the input table, ``names[level]`` the targets of each level present."""
    parts = []
    for level, columns in names.items():
        if not len(columns):
            continue
        n, t = len(variants), len(columns)
        part = pd.DataFrame(
            {col: np.repeat(variants[col].to_numpy(), t) for col in TIDY_COLUMNS[:6]}
        )
        part["model"] = model
        part["level"] = level
        part["target"] = np.tile(np.asarray(columns, dtype=object), n)
        for key in TIDY_COLUMNS[9:-1]:
            part[key] = effects[level][key].reshape(-1)
        part["n_seeds"] = n_seeds
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=list(TIDY_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(TIDY_COLUMNS)]


def summary_table(
    table: pd.DataFrame,
    kinds: np.ndarray,
    lineage: Mapping[str, np.ndarray],
    lineages: Sequence[str],
    model: str,
    n_seeds: int,
) -> pd.DataFrame:
    """Every input variant (:data:`SUMMARY_COLUMNS`): its status and, when scored, the lineage
    of largest |seed-mean log2fc| and of largest JSD."""
    out = table[["variant_id", "name", "chrom", "pos", "ref", "alt", "line", "status"]].copy()
    ok = (out["status"] == "ok").to_numpy()
    out["kind"] = ""
    out.loc[ok, "kind"] = kinds
    out["model"] = model
    for col in SUMMARY_COLUMNS[10:]:
        out[col] = np.nan
    out[["top_lineage", "max_jsd_lineage"]] = ""
    if ok.any():
        lfc, lfc_sd, jsd = (lineage[k] for k in ("log2fc_mean", "log2fc_sd", "jsd_mean"))
        top = np.nanargmax(np.abs(lfc), axis=1)
        rows = np.arange(len(top))
        names = np.asarray(lineages, dtype=object)
        out.loc[ok, "max_abs_log2fc"] = np.abs(lfc[rows, top])
        out.loc[ok, "top_lineage"] = names[top]
        out.loc[ok, "top_log2fc_mean"] = lfc[rows, top]
        out.loc[ok, "top_log2fc_sd"] = lfc_sd[rows, top]
        best = np.nanargmax(jsd, axis=1)
        out.loc[ok, "max_jsd"] = jsd[rows, best]
        out.loc[ok, "max_jsd_lineage"] = names[best]
        out.loc[ok, "n_seeds"] = n_seeds
    return out[list(SUMMARY_COLUMNS)]


def profile_positions(seq_len: int, profile_len: int, bin_size: int) -> np.ndarray:
    """Offset (bp, float) of each profile bin's centre from the variant's first changed base,
    which sits at the window centre (``bpaitac.numeric.bin_profile``'s bin layout)."""
    n_bins = profile_len // bin_size
    first = (seq_len - profile_len) // 2 + (profile_len - n_bins * bin_size) // 2
    return first + np.arange(n_bins) * bin_size + (bin_size - 1) / 2 - seq_len // 2


def score_variants(
    *,
    variants_path: str | os.PathLike,
    genome_path: str | os.PathLike,
    model_paths: Sequence[str | os.PathLike],
    model_name: str,
    celltypes: pd.DataFrame,
    lineages: Sequence[str],
    out_tsv: str | os.PathLike,
    out_summary: str | os.PathLike,
    out_profiles: str | os.PathLike,
    on_ref_mismatch: str,
    max_allele_length: int,
    top_variants: int,
    batch_size: int,
    device: str,
) -> pd.DataFrame:
    """Score every variant of ``variants_path`` with every seed (``model_paths``) of one model
    and write the tidy table, the per-variant summary and the top variants' profiles (all or
    nothing: the three files are renamed into place together). Returns the summary."""
    import pysam

    from bpaitac.model.network import resolve_device

    dev = resolve_device(device)
    models, targets = load_seed_models(model_paths, dev)
    spec = models[0].spec
    flank = spec.seq_len // 2
    table = read_variant_file(variants_path)
    with pysam.FastaFile(str(genome_path)) as fasta:
        contigs = dict(zip(fasta.references, fasta.lengths))
        table = check_against_genome(
            table,
            contigs,
            lambda c, s, e: fasta.fetch(c, s, e),
            variants_path,
            flank=flank,
            on_ref_mismatch=on_ref_mismatch,
            max_allele_length=max_allele_length,
        )
        variants = variant_set(table)
        fetch = genome_fetcher(fasta, contigs)
        lineage_of = dict(zip(celltypes["celltype"], celltypes["lineage"]))
        lineage_of.update({lin: lin for lin in lineages})
        model_lineages = [lin for lin in lineages if any(lineage_of.get(t) == lin for t in targets)]
        weights = lineage_task_matrix(targets, lineage_of, model_lineages)
        weights = weights / weights.sum(axis=0, keepdims=True)
        seeds = run_predictions(models, variants, fetch, weights, batch_size=batch_size, device=dev)
        ok = table[table["status"] == "ok"].reset_index(drop=True)
        names = {
            "celltype": [t for t in targets if t not in model_lineages],
            "lineage": model_lineages,
        }
        if len(ok):
            effects = variant_effects(seeds, targets, lineage_of, model_lineages)
            keep = [i for i, t in enumerate(targets) if t not in model_lineages]
            effects["celltype"] = {k: v[:, keep] for k, v in effects["celltype"].items()}
            tidy = tidy_table(ok, effects, names, model_name, len(models))
        else:
            log.warning("%s: no variant to score; the tables list the input's statuses", model_name)
            effects = {"lineage": {}}
            tidy = pd.DataFrame(columns=list(TIDY_COLUMNS))
        summary = summary_table(
            table, variants.kind, effects["lineage"], model_lineages, model_name, len(models)
        )
        top = (
            summary.loc[summary["status"] == "ok"]
            .sort_values("max_abs_log2fc", ascending=False, kind="stable")
            .head(top_variants)
        )
        ok_index = {vid: i for i, vid in enumerate(ok["variant_id"])}
        top_rows = np.array([ok_index[v] for v in top["variant_id"]], dtype=np.int64)
        profiles = run_predictions(
            models,
            variants,
            fetch,
            weights,
            index=top_rows,
            batch_size=batch_size,
            device=dev,
            keep_profiles=True,
        )
    n_profile = spec.profile_len // spec.bin_size
    shape = (len(top_rows), len(model_lineages), n_profile)
    mean_profile = {
        a: np.mean([p[f"profile_{a}"] for p in profiles], axis=0)
        if len(top_rows)
        else np.zeros(shape)
        for a in ("ref", "alt")
    }
    with (
        atomic_path(out_tsv) as tmp_tsv,
        atomic_path(out_summary) as tmp_summary,
        atomic_path(out_profiles) as tmp_npz,
    ):
        tidy.to_csv(tmp_tsv, sep="\t", index=False, float_format="%.6g")
        summary.to_csv(tmp_summary, sep="\t", index=False, float_format="%.6g")
        with open(tmp_npz, "wb") as fh:
            np.savez(
                fh,
                variant_id=np.asarray(top["variant_id"], dtype=str),
                label=np.asarray(
                    [n or v for n, v in zip(top["name"], top["variant_id"])], dtype=str
                ),
                top_lineage=np.asarray(top["top_lineage"], dtype=str),
                lineages=np.asarray(model_lineages, dtype=str),
                ref=mean_profile["ref"].astype(np.float32),
                alt=mean_profile["alt"].astype(np.float32),
                positions=profile_positions(spec.seq_len, spec.profile_len, spec.bin_size),
            )
    n_ok = int((summary["status"] == "ok").sum())
    log.info(
        "%s: %d variants scored with %d seed(s) -> %s, %s",
        model_name,
        n_ok,
        len(models),
        Path(out_tsv).name,
        Path(out_summary).name,
    )
    return summary
