"""TF-MoDISco (modisco-lite) as a second motif caller beside the paper's seqlet clustering:
rules ``interpret_modisco_inputs``, ``interpret_modisco``, ``interpret_jaspar_meme``,
``interpret_modisco_report``, ``interpret_modisco_tomtom`` and ``interpret_motif_callers``.

1. :func:`export_modisco_inputs`: the DeepSHAP attributions (``attributions/{model}.npz``) in
   modisco-lite's input layout, one run's worth per group (the lineages pooled, or one lineage):
   one-hot ``(N, 4, L)`` and hypothetical contributions ``(N, 4, L)`` float32, each the array
   ``arr_0`` of its ``.npz``, with a BED of the N windows (row order = modisco's example index;
   name ``peak_id|role|lineage``). By default both models' attributions are exported, the input
   of the paper's clustering (``interpret.modisco_options.roles``).
2. :func:`run_modisco_motifs` runs ``modisco motifs`` (the modisco-lite command line) on them;
   :func:`run_modisco_report` runs ``modisco report`` against the JASPAR release of our TomTom,
   written as a MEME file from pyjaspar by :func:`write_jaspar_meme` (``-l``: its TomTom is
   memelite's, as ours, so no MEME-suite binary is needed).
3. :func:`run_modisco_tomtom`: every pattern's PFM, trimmed like a cluster motif (the columns whose
   |CWM| reaches ``interpret.clustering.trim`` of the maximum), goes through the same TomTom as the
   clusters (:func:`bpaitac.interpret.tomtom.match_jaspar`, settings ``interpret.tomtom``).
4. :func:`run_motif_callers` (simulated data): which planted motifs each caller names at
   q < ``tomtom.q_threshold`` (TomTom against JASPAR plus the planted PWMs, as the truth table
   does), whether each finds NOVEL1 (a motif matching NOVEL1 that matches no JASPAR motif), and
   the run time and peak memory of each caller's rules from their Snakemake benchmark files.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bpaitac.data.sequence import decode_sequence, one_hot
from bpaitac.interpret import motifs as mot
from bpaitac.interpret.tables import load_attributions, read_tsv, save_tsv
from bpaitac.io import InputError, atomic_dir, atomic_path, require_file

# bpaitac.interpret.tomtom and .truth (memelite, torch) are imported where they are used, so that
# the export rule, whose time the motif-caller table reports, does not pay for their imports.

log = logging.getLogger(__name__)

NOVEL = "NOVEL1"
"""The simulator's synthetic motif (no JASPAR match by construction)."""

CALLERS = {"clustering": "paper's seqlet clustering", "modisco": "TF-MoDISco (modisco-lite)"}

PATTERN_COLUMNS = ["motif", "group", "sign", "pattern", "n_seqlets", "width", "consensus"]

# --------------------------------------------------------------------------------------------
# 1. Inputs


def export_modisco_inputs(
    attributions: Mapping[str, str | os.PathLike],
    ocrs_path: str | os.PathLike,
    lineages: Sequence[str],
    out_ohe: str | os.PathLike,
    out_hyp: str | os.PathLike,
    out_bed: str | os.PathLike,
) -> int:
    """Write one modisco-lite run's inputs: every region of the attribution files of the roles
    in ``attributions`` (role -> npz), once per lineage in ``lineages`` (role-major, then
    lineage, then region). Returns N.

    ``out_ohe``: one-hot (N, 4, L) float32; ``out_hyp``: hypothetical contributions (N, 4, L)
    float32 (``arr_0`` of each ``.npz``); ``out_bed``: the windows, BED6 named
    ``peak_id|role|lineage``.
    """
    from bpaitac.data.arrays import read_ocrs_tsv

    data = {role: load_attributions(path) for role, path in attributions.items()}
    first = next(iter(data.values()))
    for role, d in data.items():
        if not np.array_equal(d["peak_id"], first["peak_id"]):
            raise InputError(
                f"{attributions[role]}: its regions differ from those of "
                f"{next(iter(attributions.values()))}; rerun interpret_attributions."
            )
    stored = [str(x) for x in first["lineages"]]
    missing = [lin for lin in lineages if lin not in stored]
    if missing:
        raise InputError(
            f"{next(iter(attributions.values()))}: no attributions of lineage(s) {missing}; "
            "rerun interpret_attributions."
        )
    peaks = first["peak_id"].astype(str)
    if not len(peaks):
        raise InputError(f"{next(iter(attributions.values()))}: no interpreted region.")
    ocrs = read_ocrs_tsv(ocrs_path).set_index("peak_id")
    absent = [p for p in peaks if p not in ocrs.index]
    if absent:
        raise InputError(f"regions {absent[:3]} of the attributions are not in {ocrs_path}.")
    width = first["seq"].shape[1]
    onehot = one_hot(first["seq"])
    ohe, hyp, names = [], [], []
    for role, d in data.items():
        for lin in lineages:
            k = stored.index(lin)
            ohe.append(onehot)
            hyp.append(np.asarray(d["hypothetical"][:, k], dtype=np.float32))
            names += [f"{p}|{role}|{lin}" for p in peaks]
    ohe_all, hyp_all = np.concatenate(ohe), np.concatenate(hyp)
    starts = ocrs.loc[peaks, "summit"].to_numpy(np.int64) - width // 2
    chroms = ocrs.loc[peaks, "chrom"].astype(str).to_numpy()
    reps = len(ohe)
    bed = pd.DataFrame(
        {
            "chrom": np.tile(chroms, reps),
            "start": np.tile(starts, reps),
            "end": np.tile(starts + width, reps),
            "name": names,
            "score": 0,
            "strand": ".",
        }
    )
    for path, arr in ((out_ohe, ohe_all), (out_hyp, hyp_all)):
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, arr)
    with atomic_path(out_bed) as tmp:
        bed.to_csv(tmp, sep="\t", header=False, index=False)
    log.info(
        "modisco inputs: %d windows (%d regions x %d roles x %d lineages) of %d bp",
        len(bed),
        len(peaks),
        len(data),
        len(lineages),
        width,
    )
    return len(bed)


# --------------------------------------------------------------------------------------------
# 2. modisco-lite's command line


def modisco_command() -> str:
    """Path of modisco-lite's ``modisco`` command: next to this Python, else on ``PATH``."""
    here = Path(sys.executable).parent / "modisco"
    found = str(here) if here.exists() else shutil.which("modisco")
    if found is None:
        raise InputError(
            "modisco-lite's `modisco` command is not installed; `pip install modisco-lite==3.0.0` "
            "(a dependency of bpaitac, pyproject.toml) or use envs/interpret.yaml."
        )
    return found


def run_command(args: Sequence[str], threads: int, what: str) -> None:
    """Run a command with ``threads`` numba/BLAS threads; its output goes to the log, and a
    failure raises with the output's last lines."""
    env = {
        **os.environ,
        "NUMBA_NUM_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "MPLBACKEND": "Agg",
    }
    log.info("running %s", " ".join(map(str, args)))
    proc = subprocess.run(
        [str(a) for a in args], env=env, capture_output=True, text=True, check=False
    )
    output = (proc.stdout + proc.stderr).strip()
    if output:
        log.info("%s output:\n%s", what, output)
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit code {proc.returncode}):\n{tail}")


def run_modisco_motifs(
    ohe: str | os.PathLike,
    hyp: str | os.PathLike,
    out_h5: str | os.PathLike,
    *,
    max_seqlets: int,
    n_leiden: int,
    window: int,
    threads: int = 1,
) -> dict[str, int]:
    """``modisco motifs`` on one run's inputs (:func:`export_modisco_inputs`), written
    atomically to ``out_h5``. Returns the number of patterns per sign (``pos``, ``neg``).

    ``window`` (the central bases read) must not exceed the windows' length.
    """
    with np.load(require_file(ohe, "modisco one-hot input", "run interpret_modisco_inputs.")) as z:
        length = z["arr_0"].shape[2]
    if window > length:
        raise InputError(
            f"config key `interpret.modisco_options.window`: {window} exceeds the {length} bp "
            f"windows of {ohe}; use at most {length}."
        )
    with atomic_path(out_h5) as tmp:
        run_command(
            [
                modisco_command(),
                "motifs",
                "-s",
                ohe,
                "-a",
                hyp,
                "-n",
                max_seqlets,
                "-l",
                n_leiden,
                "-w",
                window,
                "-o",
                tmp,
                "-v",
            ],
            threads,
            "modisco motifs",
        )
        patterns = read_patterns(tmp)
    counts = {sign: sum(p["sign"] == sign for p in patterns.values()) for sign in ("pos", "neg")}
    log.info("%s: %d positive and %d negative patterns", out_h5, counts["pos"], counts["neg"])
    return counts


def write_jaspar_meme(release: str, out_meme: str | os.PathLike) -> int:
    """JASPAR CORE vertebrates of ``release`` (pyjaspar, as our TomTom) as a MEME file whose
    MOTIF lines are ``matrix_id name``; returns the number of motifs."""
    pwms, names = mot.jaspar_motifs(release)
    mot.write_meme(out_meme, {f"{k} {names[k]}": v for k, v in pwms.items()})
    return len(pwms)


def run_modisco_report(
    h5: str | os.PathLike,
    jaspar_meme: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    n_examples: int,
    n_matches: int = 3,
    threads: int = 1,
) -> None:
    """``modisco report`` of one run into ``out_dir`` (``report.html`` and its images), its
    TomTom (memelite, ``-l``) against ``jaspar_meme``, ``n_examples`` seqlet logos per pattern
    (each takes seconds to draw); the directory appears only when done."""
    require_file(jaspar_meme, "JASPAR MEME file", "run interpret_jaspar_meme.")
    if not read_patterns(h5):
        # modisco-lite's report fails on a result without patterns (IndexError in its TomTom).
        log.warning("%s holds no pattern; the report says so", h5)
        with atomic_dir(out_dir) as tmp:
            (Path(tmp) / "report.html").write_text(
                "<!DOCTYPE html><html><body><p>TF-MoDISco (modisco-lite) found no pattern in "
                f"{html.escape(str(h5))}: no seqlet cluster passed its thresholds.</p>"
                "</body></html>\n"
            )
        return
    with atomic_dir(out_dir) as tmp:
        run_command(
            [
                modisco_command(),
                "report",
                "-i",
                h5,
                "-o",
                tmp,
                "-s",
                f"{tmp}/",
                "-m",
                jaspar_meme,
                "-n",
                n_matches,
                "--n_examples",
                n_examples,
                "-l",
            ],
            threads,
            "modisco report",
        )
        if not (Path(tmp) / "report.html").exists():
            raise RuntimeError(f"modisco report wrote no report.html for {h5}.")


# --------------------------------------------------------------------------------------------
# 3. Patterns and their TomTom


def read_patterns(h5: str | os.PathLike) -> dict[str, dict]:
    """Patterns of a modisco-lite result file: ``{sign}.pattern_{i}`` -> ``sign`` (``pos`` or
    ``neg``), ``pattern``, ``pfm`` (4, w) base frequencies of the seqlets, ``cwm`` (4, w) mean
    contributions, ``n_seqlets``. A run without patterns gives an empty dict."""
    import h5py

    path = require_file(h5, "modisco results", "run interpret_modisco.")
    out = {}
    with h5py.File(path, "r") as f:
        for sign in ("pos", "neg"):
            group = f.get(f"{sign}_patterns")
            if group is None:
                continue
            names = sorted(group, key=lambda n: int(n.rsplit("_", 1)[1]))
            for name in names:
                p = group[name]
                out[f"{sign}.{name}"] = {
                    "sign": sign,
                    "pattern": name,
                    "pfm": np.asarray(p["sequence"], dtype=np.float64).T,
                    "cwm": np.asarray(p["contrib_scores"], dtype=np.float64).T,
                    "n_seqlets": int(np.asarray(p["seqlets"]["n_seqlets"]).ravel()[0]),
                }
    return out


def pattern_motifs(
    h5s: Mapping[str, str | os.PathLike], trim: float
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """PFMs of every pattern of every run (group -> h5), trimmed to the columns whose |CWM|
    reaches ``trim`` of the maximum (:func:`bpaitac.interpret.motifs.trim_span`, as the cluster
    motifs), named ``modisco_{group}_{sign}_{i}``; and a table of them (``PATTERN_COLUMNS``)."""
    pfms, rows = {}, []
    for group, h5 in h5s.items():
        for p in read_patterns(h5).values():
            lo, hi = mot.trim_span(p["cwm"], trim)
            pfm = p["pfm"][:, lo:hi]
            pfm = pfm / pfm.sum(axis=0, keepdims=True)
            name = f"modisco_{group}_{p['sign']}_{p['pattern'].rsplit('_', 1)[1]}"
            pfms[name] = pfm
            rows.append(
                (
                    name,
                    group,
                    p["sign"],
                    p["pattern"],
                    p["n_seqlets"],
                    pfm.shape[1],
                    decode_sequence(pfm.argmax(axis=0)),
                )
            )
    return pfms, pd.DataFrame(rows, columns=PATTERN_COLUMNS)


def run_modisco_tomtom(
    h5s: Mapping[str, str | os.PathLike],
    out_meme: str | os.PathLike,
    out_patterns: str | os.PathLike,
    out_tomtom: str | os.PathLike,
    *,
    trim: float,
    release: str,
    q_threshold: float,
    min_ic: float,
    min_width: int,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """The patterns of all runs as a MEME file and a table, and their TomTom against JASPAR
    (the clusters' settings, :func:`bpaitac.interpret.tomtom.match_jaspar`)."""
    from bpaitac.interpret.tomtom import match_jaspar

    pfms, table = pattern_motifs(h5s, trim)
    options = {"q_threshold": q_threshold, "min_ic": min_ic, "min_width": min_width}
    if pfms:
        matches = match_jaspar(pfms, release=release, n_jobs=n_jobs, **options)
    else:  # the empty table, without loading JASPAR
        matches = mot.tomtom_table({}, {}, **options)
    log.info(
        "%d modisco patterns, %d match %s at q < %g",
        len(pfms),
        matches["query"].nunique(),
        release,
        q_threshold,
    )
    mot.write_meme(out_meme, pfms)
    save_tsv(out_patterns, table)
    save_tsv(out_tomtom, matches)
    return matches


# --------------------------------------------------------------------------------------------
# 4. Both callers on the planted truth


def read_benchmarks(paths: Sequence[str | os.PathLike]) -> tuple[float, float]:
    """Summed wall time (s) and the largest peak RSS (MB) of Snakemake benchmark files."""
    seconds, rss = 0.0, 0.0
    for path in paths:
        table = read_tsv(path, ["s", "max_rss"])
        seconds += float(table["s"].sum())
        rss = max(rss, float(pd.to_numeric(table["max_rss"], errors="coerce").max()))
    return seconds, rss


def caller_recovery(
    motifs: Mapping[str, np.ndarray],
    planted: Mapping[str, np.ndarray],
    jaspar_matched: set[str],
    *,
    release: str,
    q_threshold: float,
    min_ic: float,
    min_width: int,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """One row per planted motif: does a motif of one caller match it at q < ``q_threshold``
    (TomTom against JASPAR plus the planted PWMs, keys ``planted:{name}``, as
    :func:`bpaitac.interpret.truth.run_truth`), the best such motif and its q, and whether
    one of the matching motifs has no JASPAR match (``jaspar_matched``: the motifs named by the
    caller's own TomTom against JASPAR), the test of a novel motif."""
    from bpaitac.interpret.tomtom import match_jaspar
    from bpaitac.interpret.truth import planted_hits

    matches = match_jaspar(
        dict(motifs),
        release=release,
        q_threshold=q_threshold,
        min_ic=min_ic,
        min_width=min_width,
        n_jobs=n_jobs,
        extra_targets=dict(planted),
    )
    index = pd.Index(list(motifs))
    rows = []
    for name in planted:
        hits = planted_hits(matches, index, name)
        unnamed = [q for q in hits["query"] if q not in jaspar_matched]
        rows.append(
            {
                "planted_motif": name.removeprefix("planted:").split()[0],
                "named": bool(len(hits)),
                "best_motif": hits["query"].iloc[0] if len(hits) else "",
                "best_q_value": float(hits["q_value"].iloc[0]) if len(hits) else np.nan,
                "n_motifs": int(hits["query"].nunique()),
                "without_jaspar_match": ",".join(dict.fromkeys(unnamed)),
            }
        )
    return pd.DataFrame(rows)


def run_motif_callers(
    *,
    truth_meme: str | os.PathLike,
    callers: Mapping[str, Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]]],
    out_table: str | os.PathLike,
    out_summary: str | os.PathLike,
    release: str,
    q_threshold: float,
    min_ic: float,
    min_width: int,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Both motif callers against the simulator's planted motifs.

    ``callers[name]`` gives ``meme`` (the caller's motifs), ``tomtom`` (its TomTom against
    JASPAR) and ``benchmarks`` (its rules' benchmark files). Writes ``out_table``, one row per
    planted motif with ``{caller}_named``, ``{caller}_motif`` and ``{caller}_q``, and
    ``out_summary``, one row per caller: motifs compared, planted JASPAR motifs named (count
    and names), NOVEL1 found (a motif matching it without a JASPAR match) and by which motif,
    wall time (s) and peak memory (MB) of its rules.
    """
    planted = {f"planted:{k}": v for k, v in mot.read_meme(truth_meme, full_names=True).items()}
    table, summary = None, []
    for caller, files in callers.items():
        motifs = mot.read_meme(files["meme"])
        jaspar = read_tsv(files["tomtom"], ["query"])
        rec = caller_recovery(
            motifs,
            planted,
            set(jaspar["query"].astype(str)),
            release=release,
            q_threshold=q_threshold,
            min_ic=min_ic,
            min_width=min_width,
            n_jobs=n_jobs,
        )
        part = rec.rename(
            columns={
                "named": f"{caller}_named",
                "best_motif": f"{caller}_motif",
                "best_q_value": f"{caller}_q",
                "n_motifs": f"{caller}_n_motifs",
                "without_jaspar_match": f"{caller}_without_jaspar_match",
            }
        )
        table = part if table is None else table.merge(part, on="planted_motif")
        known = rec[rec["planted_motif"] != NOVEL]
        novel = rec[rec["planted_motif"] == NOVEL]
        novel_motif = novel["without_jaspar_match"].iloc[0].split(",")[0] if len(novel) else ""
        seconds, rss = read_benchmarks(list(files["benchmarks"]))
        summary.append(
            {
                "caller": caller,
                "method": CALLERS.get(caller, caller),
                "motifs": len(motifs),
                "planted_jaspar_motifs": len(known),
                "named": int(known["named"].sum()),
                "named_motifs": ",".join(known.loc[known["named"], "planted_motif"]),
                "novel_found": bool(novel_motif),
                "novel_motif": novel_motif,
                "seconds": round(seconds, 1),
                "max_rss_mb": round(rss, 1),
                "benchmarks": ",".join(Path(p).stem for p in files["benchmarks"]),
            }
        )
        log.info(
            "%s: %d motifs name %d of %d planted JASPAR motifs (%s); %s %s; %.0f s, %.0f MB",
            caller,
            len(motifs),
            summary[-1]["named"],
            len(known),
            summary[-1]["named_motifs"] or "none",
            NOVEL,
            f"found ({novel_motif})" if novel_motif else "not found",
            seconds,
            rss,
        )
    if table is None:
        raise InputError("no motif caller to compare.")
    save_tsv(out_table, table)
    summary_table = pd.DataFrame(summary)
    save_tsv(out_summary, summary_table)
    return summary_table
