"""Variant effects (bpaitac.variants): reading VCF/TSV, the ref/alt windows of every kind on both
strands, the effect arithmetic over seeds, bad input, the truth comparison and the paths."""

from __future__ import annotations

import gzip
import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
import torch
from interpret_chain import CT, LINEAGES

from bpaitac.data.sequence import encode_sequence, one_hot
from bpaitac.io import ConfigError, InputError
from bpaitac.model.network import build_model, load_model, save_model
from bpaitac.variants import figures as vfig
from bpaitac.variants.inputs import check_against_genome, read_variant_file
from bpaitac.variants.score import SUMMARY_COLUMNS, TIDY_COLUMNS, score_variants, strand_predictions
from bpaitac.variants.truth import roc_auc, variant_recovery
from bpaitac.variants.windows import (
    VariantSet,
    build_groups,
    genome_fetcher,
    trim_alleles,
    variant_kind,
)
from bpaitac.workflow.config import validate_config
from bpaitac.workflow.variant_paths import VariantPaths

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".venv" / "numba-cache"))
FLANK = 500
SIZES = {"chr1": 6000, "chr2": 3000}
VCF_HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    """A random two-contig genome (FASTA + index) and its sequences."""
    rng = np.random.default_rng(3)
    seqs = {c: "".join(rng.choice(list("ACGT"), n)) for c, n in SIZES.items()}
    path = tmp_path_factory.mktemp("genome") / "genome.fa"
    path.write_text("".join(f">{c}\n{s}\n" for c, s in seqs.items()))
    pysam.faidx(str(path))
    return path, seqs


def tiny_model(seed: int):
    torch.manual_seed(seed)
    return build_model({"filters": 8, "dilated_blocks": 1, "acc_head": "conv", "n_tasks": len(CT)})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two seeds of a tiny cell-type model over the cell types of interpret_chain.CT."""
    tmp = tmp_path_factory.mktemp("models")
    paths = []
    for seed in (1, 2):
        net = tiny_model(seed)
        # non-trivial BN statistics, so that the two strands differ
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
        save_model(tmp / f"seed{seed}.pt", net, {"name": "m", "targets": list(CT["celltype"])})
        paths.append(tmp / f"seed{seed}.pt")
    return paths


def _snv(seqs, chrom, pos):
    """(pos, ref, alt) of an SNV at 1-based ``pos`` with an alt base different from the genome."""
    ref = seqs[chrom][pos - 1]
    return pos, ref, "A" if ref != "A" else "C"


def _score(tmp, variants, genome_path, models, **kw):
    opts = {
        "on_ref_mismatch": "report",
        "max_allele_length": 50,
        "top_variants": 3,
        "batch_size": 4,
        "device": "cpu",
        **kw,
    }
    out = {k: tmp / f"out_{k}" for k in ("table.tsv", "summary.tsv", "profiles.npz")}
    summary = score_variants(
        variants_path=variants,
        genome_path=genome_path,
        model_paths=models,
        model_name="m",
        celltypes=CT,
        lineages=LINEAGES,
        out_tsv=out["table.tsv"],
        out_summary=out["summary.tsv"],
        out_profiles=out["profiles.npz"],
        **opts,
    )
    return summary, out


# ----------------------------------------------------------------------------- windows


def test_every_kind_predicts_the_centred_ref_and_alt_windows_on_both_strands(genome):
    """tangermeme's substitution/deletion/insertion effects and our complex windows give the
    model exactly the windows of the docs: changed bases at the centre, left flank shared, the
    right end trimmed or read on into the genome; the reverse strand is the reverse complement."""
    path, seqs = genome
    seq = seqs["chr1"]
    starts = [1000, 1200, 1500, 1600, 2000, 2100, 2500, 2800]
    ref = [seq[1000], seq[1200:1202], seq[1500], seq[1600:1603], "", "", seq[2500:2503], seq[2800]]
    alt = [
        "A" if seq[1000] != "A" else "C",
        "".join("T" if b != "T" else "G" for b in seq[1200:1202]),
        "",
        "",
        "T",
        "ACGT",
        "CC",
        "N",
    ]
    v = VariantSet(
        chrom=np.array(["chr1"] * len(starts), dtype=object),
        start=np.array(starts),
        ref=np.array(ref, dtype=object),
        alt=np.array(alt, dtype=object),
    )
    assert list(v.kind) == [
        "substitution",
        "substitution",
        "deletion",
        "deletion",
        "insertion",
        "insertion",
        "complex",
        "complex",
    ]
    model = tiny_model(0).eval()
    with pysam.FastaFile(str(path)) as fasta:
        groups = build_groups(v, np.arange(len(v)), genome_fetcher(fasta, SIZES), FLANK)
        seen = set()
        for group in groups:
            for reverse in (False, True):
                got = strand_predictions(
                    model, group, reverse=reverse, batch_size=3, device=torch.device("cpu")
                )
                for k, i in enumerate(group.index):
                    s = starts[i]
                    hap = seq[:s] + alt[i] + seq[s + len(ref[i]) :]
                    for allele, window in enumerate(
                        (seq[s - FLANK : s + FLANK], hap[s - FLANK : s + FLANK])
                    ):
                        x = one_hot(torch.from_numpy(encode_sequence(window)[None]))
                        with torch.no_grad():
                            logits, lc = model(x.flip(1, 2) if reverse else x)
                        probs = torch.softmax(logits, -1)
                        probs = probs.flip(-1) if reverse else probs
                        torch.testing.assert_close(got[allele][1][k], lc[0], atol=1e-5, rtol=0)
                        torch.testing.assert_close(got[allele][0][k], probs[0], atol=1e-6, rtol=0)
                    seen.add(group.kind)
    assert seen == {"substitution", "deletion", "insertion", "complex"}


def test_trim_alleles_drops_the_vcf_anchor_base():
    assert trim_alleles(100, "AT", "A") == (100, "T", "")  # deletion of the base after 100
    assert trim_alleles(100, "A", "AGG") == (100, "", "GG")
    assert trim_alleles(100, "ACT", "AGT") == (100, "C", "G")
    assert variant_kind("ATG", "CC") == "complex"


# ----------------------------------------------------------------------------- effects


def test_effects_are_strand_and_seed_means_of_the_models_predictions(tmp_path, genome, models):
    """log2FC per cell type and per lineage (linear lineage means), diff and JSD, from direct
    predictions of both strands and both seeds; the summary's top lineage is the argmax."""
    path, seqs = genome
    pos, ref, alt = _snv(seqs, "chr1", 3001)
    tsv = tmp_path / "v.tsv"
    tsv.write_text(f"chrom\tpos\tref\talt\tid\nchr1\t{pos}\t{ref}\t{alt}\trs1\n")
    summary, out = _score(tmp_path, tsv, path, models)
    table = pd.read_csv(out["table.tsv"], sep="\t")
    assert list(table.columns) == list(TIDY_COLUMNS)
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert len(table) == len(CT) + len(LINEAGES)

    s = pos - 1
    win = seqs["chr1"][s - FLANK : s + FLANK]
    alt_win = win[:FLANK] + alt + win[FLANK + 1 :]
    per_seed = []
    for p in models:
        model, _ = load_model(p, "cpu")
        res = {}
        for name, w in (("ref", win), ("alt", alt_win)):
            x = one_hot(torch.from_numpy(encode_sequence(w)[None]))
            with torch.no_grad():
                lf, cf = model(x)
                lr, cr = model(x.flip(1, 2))
            res[f"lc_{name}"] = 0.5 * (cf + cr)[0].double().numpy()
            res[f"p_{name}"] = (
                0.5 * (torch.softmax(lf, -1) + torch.softmax(lr, -1).flip(-1))[0].double().numpy()
            )
        per_seed.append(res)
    lin = CT["lineage"].to_numpy()

    def jsd(p, q):
        m = 0.5 * (p + q)
        return 0.5 * (np.sum(p * np.log2(p / m), -1) + np.sum(q * np.log2(q / m), -1))

    for level, names in (("celltype", list(CT["celltype"])), ("lineage", LINEAGES)):
        lfc, dif, js = [], [], []
        for r in per_seed:
            if level == "celltype":
                a, b = r["lc_ref"], r["lc_alt"]
                pa, pb = r["p_ref"], r["p_alt"]
            else:
                a = np.array([np.log1p(np.expm1(r["lc_ref"][lin == g]).mean()) for g in LINEAGES])
                b = np.array([np.log1p(np.expm1(r["lc_alt"][lin == g]).mean()) for g in LINEAGES])
                pa = np.stack([r["p_ref"][lin == g].mean(0) for g in LINEAGES])
                pb = np.stack([r["p_alt"][lin == g].mean(0) for g in LINEAGES])
            lfc.append((b - a) / math.log(2))
            dif.append(np.expm1(b) - np.expm1(a))
            js.append(jsd(pa, pb))
        got = table[table["level"] == level].set_index("target").loc[names]
        for key, vals in (("log2fc", lfc), ("diff", dif), ("jsd", js)):
            vals = np.array(vals)
            np.testing.assert_allclose(got[f"{key}_mean"], vals.mean(0), rtol=1e-3, atol=1e-7)
            np.testing.assert_allclose(got[f"{key}_sd"], vals.std(0, ddof=1), rtol=1e-2, atol=1e-7)
    lineage_rows = table[table["level"] == "lineage"].reset_index(drop=True)
    top = lineage_rows["log2fc_mean"].abs().idxmax()
    assert summary["top_lineage"].iloc[0] == lineage_rows["target"].iloc[top]
    assert summary["max_abs_log2fc"].iloc[0] == pytest.approx(
        abs(lineage_rows["log2fc_mean"].iloc[top]), rel=1e-4
    )
    assert summary["status"].tolist() == ["ok"] and summary["n_seeds"].iloc[0] == 2
    prof = vfig.load_profiles(out["profiles.npz"])
    assert prof["ref"].shape == (1, len(LINEAGES), 250) and prof["label"].tolist() == ["rs1"]
    assert prof["positions"][0] == -125 and prof["positions"][-1] == 124


def test_vcf_plain_and_bgzipped_indels_split_and_skipped(tmp_path, genome, models, caplog):
    """A bgzipped VCF reads like the plain one; multi-allelic records are split, symbolic alleles,
    REF mismatches and repeated variants are listed with their status and counted in the log."""
    path, seqs = genome
    s1, s2 = seqs["chr1"], seqs["chr2"]
    p1, r1, a1 = _snv(seqs, "chr1", 1500)
    other = "G" if s1[2499] != "G" else "T"
    mismatch = "C" if s2[1499] != "C" else "G"
    lines = [
        f"chr1\t{p1}\trsA\t{r1}\t{a1},<DEL>\t.\t.\t.",
        f"chr1\t2000\t.\t{s1[1999:2002]}\t{s1[1999]}\t.\t.\t.",  # 2 bp deletion
        f"chr1\t2500\t.\t{s1[2499]}\t{s1[2499]}TTT,{other}\t.\t.\t.",  # insertion + SNV
        f"chr2\t1500\tbad\t{mismatch}\tA\t.\t.\t.",
        f"chr1\t{p1}\tdup\t{r1}\t{a1}\t.\t.\t.",
    ]
    plain = tmp_path / "v.vcf"
    plain.write_text(VCF_HEADER + "\n".join(lines) + "\n")
    bgz = tmp_path / "v.vcf.gz"
    pysam.tabix_compress(str(plain), str(bgz))
    with caplog.at_level(logging.INFO):
        summary, _ = _score(tmp_path, bgz, path, models)
    plain_table = read_variant_file(plain)
    assert plain_table.equals(read_variant_file(bgz))
    assert summary["status"].tolist() == [
        "ok",
        "symbolic",
        "ok",
        "ok",
        "ok",
        "ref_mismatch",
        "duplicate",
    ]
    assert summary["kind"].tolist()[:5] == [
        "substitution",
        "",
        "deletion",
        "insertion",
        "substitution",
    ]
    assert summary.loc[summary["status"] != "ok", "max_abs_log2fc"].isna().all()
    text = caplog.text
    assert "2 multi-allelic record(s) split into one variant per allele" in text
    assert "1 variant(s) left unscored: REF differs from the genome" in text
    assert "1 variant(s) skipped as symbolic (lines 3)" in text
    assert "1 variant(s) skipped as duplicate" in text


# ----------------------------------------------------------------------------- bad input


def _write_vcf(tmp_path, body: str, name: str = "bad.vcf") -> Path:
    path = tmp_path / name
    path.write_text(VCF_HEADER + body)
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("chr1\t100\t.\tA\n", r"bad\.vcf, line 3: malformed VCF record: 4 tab-separated field"),
        ("chr1\tabc\t.\tA\tG\n", r"bad\.vcf, line 3: position 'abc' is not a positive integer"),
        ("chr1\t100\t.\tA\tG\nchr1\t0\t.\tA\tG\n", r"line 4: position '0' is not a positive"),
        ("chr1\t100\t.\tAX\tG\n", r"line 3: REF 'AX' is not a DNA allele"),
        ("chr1\t100\t.\tA\tQ\n", r"line 3: ALT allele 'Q' is neither a DNA allele"),
        ("chr9\t100\t.\tA\tG\n", r"line 3: contig 'chr9' is not in the genome; genome contigs: "),
        ("1\t100\t.\tA\tG\n", r"line 3: contig '1' is not in the genome \(the genome names it "),
        ("chr2\t200\t.\tA\tG\n", r"line 3: chr2:200 is too close to the contig end for the 1000"),
        ("chr2\t2600\t.\tA\tG\n", r"line 3: chr2:2600 is too close to the contig end"),
    ],
)
def test_bad_vcf_lines_stop_the_run_naming_file_and_line(tmp_path, genome, models, body, message):
    path, _ = genome
    with pytest.raises(InputError, match=message):
        _score(tmp_path, _write_vcf(tmp_path, body), path, models)
    assert not list(tmp_path.glob("out_*")), "nothing may be written on failure"
    assert not list(tmp_path.glob(".out_*")), "no temporary file may be left"


def test_ref_mismatch_as_an_error_names_the_line(tmp_path, genome, models):
    path, seqs = genome
    wrong = "C" if seqs["chr1"][1999] != "C" else "G"
    vcf = _write_vcf(
        tmp_path, f"chr1\t1500\t.\t{seqs['chr1'][1499]}\tA,C\nchr1\t2000\t.\t{wrong}\tA\n"
    )
    with pytest.raises(InputError, match=rf"bad\.vcf, line 4: REF {wrong} differs from the genome"):
        _score(tmp_path, vcf, path, models, on_ref_mismatch="error")
    assert not list(tmp_path.glob("out_*"))


def test_tsv_needs_its_header_and_vcf_its_header_line(tmp_path, genome, models):
    path, _ = genome
    tsv = tmp_path / "v.tsv"
    tsv.write_text("chrom\tposition\tref\talt\nchr1\t100\tA\tG\n")
    with pytest.raises(InputError, match=r"v\.tsv, line 1: missing column\(s\) \['pos'\]"):
        read_variant_file(tsv)
    vcf = tmp_path / "h.vcf"
    vcf.write_text("##fileformat=VCFv4.2\nchr1\t100\t.\tA\tG\n")
    with pytest.raises(InputError, match=r"h\.vcf, line 2: a record before the #CHROM header"):
        read_variant_file(vcf)
    gz = tmp_path / "v.tsv.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("chrom\tpos\tref\talt\tid\textra\nchr1\t100\tA\tG,T\tx\t1\n")
    table = read_variant_file(gz)
    assert table["variant_id"].tolist() == ["chr1:100:A:G", "chr1:100:A:T"]
    assert table["name"].tolist() == ["x", "x"] and table["line"].tolist() == [2, 2]


def test_symbolic_and_long_alleles_are_skipped_not_scored(tmp_path, genome):
    path, seqs = genome
    vcf = _write_vcf(
        tmp_path,
        "chr1\t1500\t.\tA\t<DEL>\nchr1\t1600\t.\tA\t*\nchr1\t1700\t.\tA\tA[chr2:100[\n"
        f"chr1\t1800\t.\t{seqs['chr1'][1799:1860]}\t{seqs['chr1'][1799]}\nchr1\t1900\t.\tA\t.\n",
    )
    table = read_variant_file(vcf)
    with pysam.FastaFile(str(path)) as fa:
        checked = check_against_genome(
            table,
            SIZES,
            fa.fetch,
            vcf,
            flank=FLANK,
            on_ref_mismatch="report",
            max_allele_length=50,
        )
    assert checked["status"].tolist() == ["symbolic", "symbolic", "symbolic", "too_long", "no_alt"]


def test_no_scorable_variant_writes_the_statuses(tmp_path, genome, models):
    path, _ = genome
    vcf = _write_vcf(tmp_path, "chr1\t1500\t.\tA\t<DEL>\n")
    summary, out = _score(tmp_path, vcf, path, models)
    assert summary["status"].tolist() == ["symbolic"]
    assert pd.read_csv(out["table.tsv"], sep="\t").empty
    fig = vfig.draw_variant_figure(
        pd.read_csv(out["table.tsv"], sep="\t"),
        summary,
        vfig.load_profiles(out["profiles.npz"]),
        "M",
    )
    assert "no variant scored (1 symbolic)" in fig.texts[0].get_text()


# ----------------------------------------------------------------------------- truth, paths


def test_roc_auc_and_recovery_of_a_perfect_scorer():
    assert roc_auc([3, 4, 5], [1, 2]) == 1.0
    assert roc_auc([1, 2], [3, 4, 5]) == 0.0
    assert roc_auc([1, 2], [1, 2]) == 0.5
    assert np.isnan(roc_auc([], [1.0]))
    truth = pd.DataFrame(
        {
            "chrom": "chr1",
            "pos": [10, 20, 30, 40],
            "ref": "A",
            "alt": "G",
            "id": ["a", "b", "c", "d"],
            "class": ["site_breaking", "site_breaking", "background", "site_creating"],
        }
    )
    planted_values = {"a": [-2.0, -0.5], "b": [-1.0, -0.1], "c": [0.0, 0.0], "d": [0.5, 1.0]}
    planted = pd.DataFrame(
        [(i, "lineage", g, v[k]) for i, v in planted_values.items() for k, g in enumerate("XY")],
        columns=["id", "level", "target", "planted_log2fc"],
    )
    table = planted.merge(truth, on="id").rename(columns={"planted_log2fc": "log2fc_mean"})
    table = table.drop(columns=["id", "class"])  # what a tidy table has: no truth columns
    table["log2fc_mean"] = 0.5 * table["log2fc_mean"] + 0.01  # a linear map: R = 1
    table.loc[table["pos"] == 30, "log2fc_mean"] = [0.02, -0.01]
    summary = table.groupby(["chrom", "pos", "ref", "alt"], as_index=False)["log2fc_mean"].agg(
        lambda x: x.abs().max()
    )
    summary = summary.rename(columns={"log2fc_mean": "max_abs_log2fc"}).assign(status="ok")
    got = variant_recovery(table, summary, truth, planted)
    assert got["n_breaking"] == 2 and got["n_background"] == 1 and got["n_creating"] == 1
    assert got["auc_breaking"] == 1.0 and got["auc_creating"] == 1.0
    assert got["r_breaking"] == pytest.approx(1.0)
    assert np.isnan(got["r_creating"])  # one variant x two lineages: fewer than 3 pairs


def _config(variants: dict, **extra) -> dict:
    raw = {
        "dataset": "d",
        "source": "simulate",
        "celltypes": "c.tsv",
        "architectures": {"a": {"filters": 4, "dilated_blocks": 0}},
        "models": {
            m: {
                "arch": "a",
                "loss": "mse",
                "bias": "none",
                "bin": 1,
                "seeds": [1, 2],
                "targets": "celltypes",
            }
            for m in ("aitac", "bpaitac", "other")
        },
        "variants": variants,
        **extra,
    }
    return validate_config(raw)


def test_variant_paths_defaults_urls_truth_and_bad_models():
    cfg = _config({})
    paths = VariantPaths(cfg, cfg["models"])
    assert not paths.enabled and paths.targets("d") == []
    assert cfg["variants"]["on_ref_mismatch"] == "report"

    cfg = _config({"path": "https://host/x/my.vcf.gz?dl=1"})
    paths = VariantPaths(cfg, cfg["models"])
    assert paths.models() == ["bpaitac"]  # interpret.profile_model, all its seeds
    assert paths.variant_file("d") == "resources/d/variants/my.vcf.gz"
    wc = type("W", (), {"dataset": "d", "model": "bpaitac"})()
    assert paths.score_inputs(wc)["models"] == [
        f"results/d/models/bpaitac/seed{s}/model.pt" for s in (1, 2)
    ]
    assert "results/d/figures/variants_bpaitac.png" in paths.targets("d")
    assert not paths.is_truth("d")

    cfg = _config({"path": "resources/d/truth/variants.tsv", "models": ["other", "aitac"]})
    paths = VariantPaths(cfg, cfg["models"])
    assert paths.is_truth("d") and paths.targets("d")[-1] == "results/d/variants/variant_truth.tsv"
    assert paths.roles() == {"other": "", "aitac": "reference"}

    cfg = _config({"path": "v.vcf", "models": ["nope"]})
    with pytest.raises(ConfigError, match=r"config key `variants.models`: 'nope' is not in the"):
        VariantPaths(cfg, cfg["models"]).models()
    with pytest.raises(ConfigError, match=r"`variants.on_ref_mismatch`: 'skip' is not allowed"):
        _config({"on_ref_mismatch": "skip"})
