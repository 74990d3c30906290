"""How far a perfect model's motif-insertion effect can follow the planted TF activity.

The validation target "per-lineage insertion effect correlates >= 0.8 with the planted activity"
(issue 11, README "Validation on known truth") asks a model's insertion effect to follow the
simulator's TF activity. In the simulator one site adds ``e_TF,c * expit(log a_TF,c + s - s_ref)``
to accessibility (docs/simulation.md, steps 5-6), so even a model that learned the simulator
exactly has an insertion effect that saturates in ``a`` and carries the cell-type noise of
``e_TF,c``. This script computes that perfect model's per-lineage effect from the simulator's
truth tables and prints its Pearson R over lineages with the activity and with log activity,
for the planted consensus (what the workflow inserts) and for typical sites sampled from each
PWM. Nothing is trained: it needs only the simulated dataset.

    python benchmarks/activity_target_ceiling.py --configfile config/validate.yaml

after the config's ``simulate`` rule (``resources/{dataset}/truth/``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from _report import add_json_argument, write_report

from bpaitac.interpret import motifs as mot
from bpaitac.interpret.truth import (
    log_activity,
    pearson_over_lineages,
    planted_name_map,
    planted_site_effects,
    read_activity,
)
from bpaitac.io import lineage_order
from bpaitac.workflow.config import load_config, selected_celltypes


def ceiling_table(
    truth: Path, celltypes: pd.DataFrame, lineages: list[str], n_sampled: int
) -> pd.DataFrame:
    """Per planted TF: a perfect model's one-site effect vs activity, both scales, both sites."""
    activity_tsv, effects_tsv = truth / "activity.tsv", truth / "effects.tsv"
    activity = read_activity(activity_tsv, celltypes, lineages)
    ppms = mot.read_meme(truth / "motifs.meme", full_names=True)
    names = planted_name_map(list(ppms), activity.index)
    args = (ppms, names, activity_tsv, effects_tsv, celltypes, lineages)
    sites = {
        "consensus": planted_site_effects(*args),
        "typical": planted_site_effects(*args, n_sampled=n_sampled),
    }
    rows = []
    for tf in sites["consensus"].index:
        act = activity.loc[tf]
        row: dict[str, object] = {"tf": tf}
        for site, table in sites.items():
            row[f"{site}_vs_activity"] = pearson_over_lineages(table.loc[tf], act)
            row[f"{site}_vs_log_activity"] = pearson_over_lineages(table.loc[tf], log_activity(act))
        rows.append(row)
    return pd.DataFrame(rows).set_index("tf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", default="config/validate.yaml")
    parser.add_argument("--resources", default="resources")
    parser.add_argument("--n-sampled", type=int, default=2000, help="typical sites per PWM")
    add_json_argument(parser, "activity_target_ceiling")
    args = parser.parse_args()
    config = load_config(args.configfile)
    celltypes = selected_celltypes(config)
    lineages = lineage_order(celltypes)
    truth = Path(args.resources) / config["dataset"] / "truth"
    table = ceiling_table(truth, celltypes, lineages, args.n_sampled)
    print(f"perfect model's per-lineage one-site effect vs planted activity ({truth})")
    print(table.round(2).to_string())
    r = table["consensus_vs_activity"]
    print(f"consensus vs activity >= 0.8: {int((r >= 0.8).sum())} of {r.notna().sum()} planted TFs")
    write_report(args.json, "activity_target_ceiling", table.reset_index().to_dict("records"))


if __name__ == "__main__":
    main()
