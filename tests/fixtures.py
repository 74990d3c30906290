"""Small random data in the exact array layout of docs/contracts.md, for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# Two lineages of the real table (first cell types of each), enough for lineage targets.
CELLTYPES = ["LTHSC.34-.BM", "LTHSC.34+.BM", "STHSC.150-.BM", "B.Fr.BC.BM", "B.Fr.E.BM"]
TABLE = pd.DataFrame(
    {
        "celltype": CELLTYPES,
        "lineage": ["Stem&Prog"] * 3 + ["B"] * 2,
        "organ": ["bone marrow"] * 5,
    }
)
SPLITS = {"train": 48, "val": 24, "test": 20}


def _profiles(rng: np.random.Generator, seq: np.ndarray, n_tracks: int) -> np.ndarray:
    """Insertions that depend on the sequence (a GC-rich centre draws more), uint16."""
    n = len(seq)
    centre = seq[:, 375:625]
    gc = ((centre == 1) | (centre == 2)).astype(np.float64)
    scale = rng.uniform(0.02, 0.3, size=(1, n_tracks, 1))
    rate = scale * (0.2 + 2.0 * gc[:, None, :])
    return rng.poisson(rate).astype(np.uint16).reshape(n, n_tracks, 250)


def write_split(
    directory: Path,
    n: int,
    rng: np.random.Generator,
    celltypes: list[str] = CELLTYPES,
    bias_models: tuple[str, ...] = (),
) -> Path:
    """Write seq/profile/counts/ocrs/celltypes (+ bias/{name}.npy) of a split of ``n`` OCRs."""
    directory.mkdir(parents=True, exist_ok=True)
    seq = rng.integers(0, 4, size=(n, 1000), dtype=np.uint8)
    seq[rng.random((n, 1000)) < 0.01] = 4  # a few N
    profile = _profiles(rng, seq, len(celltypes))
    counts = profile.sum(-1).astype(np.float32) * rng.uniform(0.8, 1.2, size=(1, len(celltypes)))
    np.save(directory / "seq.npy", seq)
    np.save(directory / "profile.npy", profile)
    np.save(directory / "counts.npy", counts.astype(np.float32))
    (directory / "celltypes.txt").write_text("\n".join(celltypes) + "\n")
    pd.DataFrame(
        {
            "peak_id": [f"ImmGenATAC1219.peak_{directory.name}{i}" for i in range(n)],
            "chrom": "chr1",
            "summit": np.arange(n) * 2000 + 1000,
        }
    ).to_csv(directory / "ocrs.tsv", sep="\t", index=False)
    for name in bias_models:
        (directory / "bias").mkdir(exist_ok=True)
        np.save(directory / "bias" / f"{name}.npy", rng.normal(size=(n, 250)).astype(np.float32))
    return directory


def write_dataset(root: Path, seed: int = 0, bias_models: tuple[str, ...] = ()) -> dict[str, Path]:
    """Write ``train``/``val``/``test`` splits under ``root``; returns split -> directory."""
    rng = np.random.default_rng(seed)
    return {
        split: write_split(root / split, n, rng, bias_models=bias_models)
        for split, n in SPLITS.items()
    }


def write_bias_set(root: Path, seed: int = 0) -> dict[str, Path]:
    """A bias set: ``train``/``val`` with ``seq.npy`` and ``profile.npy`` (N, 1, 250)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", 40), ("val", 16)):
        d = root / split
        d.mkdir(parents=True, exist_ok=True)
        seq = rng.integers(0, 4, size=(n, 1000), dtype=np.uint8)
        np.save(d / "seq.npy", seq)
        np.save(d / "profile.npy", _profiles(rng, seq, 1) * 5)
        out[split] = d
    return out


ARCH = {"filters": 8, "dilated_blocks": 2, "acc_head": "conv"}
TRAINING = {
    "learning_rate": 0.003,
    "batch_size": 16,
    "eval_batch_size": 32,
    "max_epochs": 3,
    "patience": 5,
    "progress": False,
}
