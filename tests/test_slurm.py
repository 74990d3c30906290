"""Slurm for real: the tiny workflow through `profiles/slurm` on a single-node Slurm that this
module installs (Debian's slurm-wlm and munge, as root) and starts (tests/slurm_cluster.py).

Checks what a user relies on: every target is built, every non-local rule ran as a Slurm job,
GPU rules asked for one GPU and were given it (the job saw `CUDA_VISIBLE_DEVICES` and
`SLURM_STEP_GPUS`), jobs asked for the threads, memory and wall time their rules declare,
no account was guessed, and the test's daemons (only those) are stopped again. Skipped, with the
reason, only where Slurm cannot be installed (not root, no apt-get).
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from slurm_cluster import PARTITION, SlurmCluster, why_unavailable

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TRAINING_RULES = {"train_model", "train_bias_model"}
# Distinct from every default, so that the checks see the rule's own request.
TRAIN_RESOURCES = {"mem_mb": 3000, "runtime": 25}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = why_unavailable()
    if reason:
        pytest.skip(f"no Slurm to test against: {reason}")
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def _env(cluster: SlurmCluster) -> dict[str, str]:
    env = {
        **cluster.env,
        "PATH": f"{BIN}{os.pathsep}{cluster.env['PATH']}",
        "MPLBACKEND": "Agg",
        # The site overlay of profiles/slurm: environment variables (README, "On a Slurm
        # cluster"). No account: the profile must then submit without -A and guess none.
        "BPAITAC_SLURM_PARTITION": PARTITION,
        "BPAITAC_SLURM_GPU_PARTITION": PARTITION,
    }
    env.pop("BPAITAC_SLURM_ACCOUNT", None)
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".venv" / "numba-cache"))
    return env


def snakemake(cluster, workdir: Path, *args: str, timeout: float = 3000):
    # Run from the repository root, as a user does: profiles/default (the workflow profile) is
    # loaded too. The second profile only makes this small run quick and keeps the Slurm logs.
    cmd = [
        "snakemake",
        "--snakefile", str(ROOT / "workflow" / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(workdir / "tiny.yaml"),
        "--profile", str(ROOT / "profiles" / "slurm"),
        "--profile", str(workdir / "test-profile"),
        *args,
    ]  # fmt: skip
    return subprocess.run(
        cmd,
        cwd=ROOT,
        env=_env(cluster),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The tiny workflow as Slurm jobs; yields (workdir, config, finished process, seconds).

    A subset of its targets: one figure per kind of job a Slurm run binds differently (training
    and bias models on the GPU partition, evaluation, the bias-model figure, interpretation with
    truth recovery), without the rules that add no new kind of job (variants, tracks, modisco;
    every rule runs in tests/test_workflow_e2e.py), which keeps this test's polling short.
    """
    workdir = tmp_path_factory.mktemp("tiny_slurm")
    config = yaml.safe_load((ROOT / "config" / "tiny.yaml").read_text())
    config["celltypes"] = str(ROOT / config["celltypes"])
    config["figures"] = ["fig1b", "figS4", "fig3c"]
    config["interpret"]["modisco"] = False
    config["interpret"]["tracks"] = {**config["interpret"].get("tracks", {}), "build": False}
    config.pop("variants", None)
    config["threads"] = 1  # one job per (oversubscribed) CPU of the node
    config["resources"] = {"train": TRAIN_RESOURCES}
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    profile = workdir / "test-profile"
    profile.mkdir()
    overlay = {
        "jobs": cluster.cpus,
        "latency-wait": 5,
        "retries": 0,
        # The first status check; after each check that finds no finished job the plugin waits
        # 10 s longer (up to 180 s): 5 s catches the tiny jobs' ~10-20 s runs at the second one.
        "slurm-init-seconds-before-status-checks": 5,
        "slurm-keep-successful-logs": True,
        "slurm-logdir": str(workdir / "slurm_logs"),
    }
    (profile / "config.yaml").write_text(yaml.safe_dump(overlay))
    start = time.monotonic()
    proc = snakemake(cluster, workdir)
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-8000:] + "\n" + cluster.logs()
    return workdir, config, proc, seconds


def job_stats(log: str) -> dict[str, int]:
    """Snakemake's "Job stats" table: rule -> number of jobs."""
    table = log.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def slurm_jobs(workdir: Path) -> dict[str, list[tuple[str, Path]]]:
    """The plugin's per-job Slurm logs: rule -> [(Slurm job id, log file)]."""
    jobs: dict[str, list[tuple[str, Path]]] = {}
    root = workdir / "slurm_logs"
    for log in root.glob("rule_*/**/*.log"):
        rule = log.relative_to(root).parts[0].removeprefix("rule_")
        jobs.setdefault(rule, []).append((log.stem, log))
    return jobs


def scontrol(cluster, job_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "--details", "--oneliner", "show", "job", job_id],
        env=cluster.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


def test_every_target_is_built(slurm_run, cluster):
    workdir, config, proc, seconds = slurm_run
    print(f"tiny workflow on Slurm: {seconds:.0f} s")
    log = proc.stderr
    assert "steps (100%) done" in log, log[-3000:]
    figures = workdir / "results" / config["dataset"] / "figures"
    for name in config["figures"]:
        for ext in ("pdf", "png"):
            assert (figures / f"{name}.{ext}").stat().st_size > 1000, f"{name}.{ext}"
    dry = snakemake(cluster, workdir, "-n", timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_every_non_local_rule_ran_as_a_slurm_job(slurm_run, cluster):
    workdir, _, proc, _ = slurm_run
    stats = job_stats(proc.stderr)
    jobs = slurm_jobs(workdir)
    expected = {rule: n for rule, n in stats.items() if rule != "all"}  # `all` runs locally
    assert {rule: len(js) for rule, js in jobs.items()} == expected
    for rule, js in jobs.items():
        for job_id, log in js:
            info = scontrol(cluster, job_id)
            assert info["JobState"] == "COMPLETED", (rule, job_id, info["JobState"])
            assert info["Partition"] == PARTITION
            assert info["ExitCode"] == "0:0", (rule, log.read_text()[-2000:])


def rules_declaring_gpu() -> set[str]:
    """Rules whose `resources:` declare `gpu=` (workflow/rules/*.smk)."""
    names = set()
    block = re.compile(r"^\s*rule (\w+):(.*?)(?=^\s*rule\b|\Z)", re.S | re.M)
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for m in block.finditer(smk.read_text()):
            if re.search(r"^\s*gpu=", m.group(2), re.M):
                names.add(m.group(1))
    return names


def test_gpu_rules_asked_for_one_gpu_and_got_it(slurm_run, cluster):
    workdir, config, _, _ = slurm_run
    jobs = slurm_jobs(workdir)
    gpu_rules = rules_declaring_gpu()
    assert TRAINING_RULES <= gpu_rules & set(jobs)
    for rule, js in jobs.items():
        for job_id, _ in js:
            info = scontrol(cluster, job_id)
            asked, given = info.get("TresPerJob", ""), info.get("JOB_GRES", "")
            if rule in gpu_rules:  # asked for one GPU (--gpus=1) and was allocated one
                assert (asked, given) == ("gres:gpu:1", "gpu:1"), (rule, asked, given)
            else:
                assert "gpu" not in asked + given, (rule, asked, given)
    # The training jobs saw their GPU (bpaitac.model.network.resolve_device logs the job's
    # variables).
    logs = workdir / "logs" / config["dataset"]
    train_logs = [*(logs / "train").glob("*/seed*.log"), *(logs / "bias").glob("train_*.log")]
    assert len(train_logs) == len(jobs["train_model"]) + len(jobs["train_bias_model"])
    for log in train_logs:
        text = log.read_text()
        assert re.search(r"device auto -> \S+; CUDA_VISIBLE_DEVICES=\d", text), (log, text[:2000])
        assert re.search(r"SLURM_(JOB|STEP)_GPUS=\d", text), (log, text[:2000])


def test_jobs_ask_for_their_rules_resources(slurm_run, cluster):
    workdir, config, proc, _ = slurm_run
    for job_id, _ in slurm_jobs(workdir)["train_model"]:
        info = scontrol(cluster, job_id)
        assert info["MinMemoryNode"] == f"{TRAIN_RESOURCES['mem_mb']}M", info["MinMemoryNode"]
        assert info["TimeLimit"] == f"00:{TRAIN_RESOURCES['runtime']}:00", info["TimeLimit"]
        assert info["NumCPUs"] == str(config["threads"])
    # A rule without its own sizes gets the profile's default-resources.
    job_id, _ = slurm_jobs(workdir)["figure_fig1b"][0]
    info = scontrol(cluster, job_id)
    assert (info["MinMemoryNode"], info["TimeLimit"]) == ("4000M", "01:00:00")
    # No account set: no -A and nothing guessed (bpaitac/workflow/slurm.py).
    assert "slurm account" not in proc.stderr.lower(), [
        line for line in proc.stderr.splitlines() if "account" in line.lower()
    ]


def test_cluster_stops_only_its_own_daemons(cluster, tmp_path):
    with SlurmCluster(tmp_path / "second") as second:
        pids = {name: p.pid for name, p in second.procs.items()}
    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"{name} ({pid}) still runs"
    assert all(p.poll() is None for p in cluster.procs.values()), "the first cluster was stopped"
    assert cluster.node_state() in ("idle", "mixed", "allocated")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


# --- the profile itself, without a cluster ---


def parsed_profile(monkeypatch, **site: str) -> dict:
    """profiles/slurm as Snakemake reads it, under the given BPAITAC_SLURM_* variables."""
    from snakemake.profiles import ProfileConfigFileParser

    for name in ("PARTITION", "GPU_PARTITION", "ACCOUNT", "JOBS"):
        monkeypatch.delenv(f"BPAITAC_SLURM_{name}", raising=False)
    for name, value in site.items():
        monkeypatch.setenv(f"BPAITAC_SLURM_{name.upper()}", value)
    with open(ROOT / "profiles" / "slurm" / "config.yaml") as stream:
        return dict(ProfileConfigFileParser().parse(stream))


def test_profile_runs_as_shipped_without_site_values(monkeypatch):
    text = (ROOT / "profiles" / "slurm" / "config.yaml").read_text()
    assert "CHANGE_ME" not in text
    profile = parsed_profile(monkeypatch)
    assert profile["executor"] == "slurm" and profile["jobs"] == "100"
    assert profile["slurm-no-account"] == "True"
    defaults = dict(kv.split("=", 1) for kv in profile["default-resources"])
    assert not {"slurm_partition", "slurm_account"} & set(defaults)
    assert "set-resources" not in profile
    assert "software-deployment-method" not in profile  # conda is opt-in


def test_profile_takes_site_values_from_the_environment(monkeypatch):
    profile = parsed_profile(
        monkeypatch, partition="all", gpu_partition="gpu-a100", account="lab", jobs="7"
    )
    assert profile["jobs"] == "7"
    assert "slurm-no-account" not in profile
    defaults = dict(kv.split("=", 1) for kv in profile["default-resources"])
    # Quoted: a partition named like a Python builtin (`all`) stays a string.
    assert defaults["slurm_partition"] == "'all'" and defaults["slurm_account"] == "'lab'"
    routed = "slurm_partition='gpu-a100'"
    gpu = {e.split(":", 1)[0] for e in profile["set-resources"] if routed in e}
    assert gpu == rules_declaring_gpu()


def test_profile_leaves_memory_and_runtime_to_the_rules(monkeypatch):
    """Only small defaults (for rules that declare nothing); per-rule sizes are the rules' own
    (config `resources:`), the profile only routes GPU rules to the GPU partition."""
    profile = parsed_profile(monkeypatch, gpu_partition="gpu")
    defaults = dict(kv.split("=", 1) for kv in profile["default-resources"])
    assert int(defaults["mem_mb"]) <= 4000 and int(defaults["runtime"]) <= 60
    assert all(":slurm_partition=" in entry for entry in profile["set-resources"])
    assert "cores" not in profile  # a cap on every rule's threads


def test_workflow_profile_does_not_cap_cluster_runs():
    """profiles/default is loaded also with --profile slurm, and wins: no cores, no gpu limit."""
    default = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    assert not {"cores", "resources", "jobs", "executor"} & set(default)


def test_no_account_means_no_guess(monkeypatch):
    import snakemake_executor_plugin_slurm as plugin

    from bpaitac.workflow.slurm import honour_no_account

    assert honour_no_account() and honour_no_account()  # idempotent
    monkeypatch.setattr(plugin, "get_account", lambda *a: pytest.fail("account guessed"))
    monkeypatch.setattr(plugin, "validate_account", lambda account, logger: account)

    class Job:
        def __init__(self, **resources):
            self.resources = type("R", (dict,), {"__getattr__": dict.__getitem__})(resources)

    def executor(no_account):
        settings = type("S", (), {"no_account": no_account})()
        ex = object.__new__(plugin.Executor)
        ex.workflow = type("W", (), {"executor_settings": settings})()
        ex._fallback_account_arg = None
        ex.logger = type("L", (), {"warning": lambda *a: None})()
        return ex

    assert next(executor(True).get_account_arg(Job())) == ""
    assert next(executor(True).get_account_arg(Job(slurm_account="lab"))) == " -A lab"
    monkeypatch.setattr(plugin, "get_account", lambda *a: None)
    assert next(executor(False).get_account_arg(Job())) == ""  # the plugin's own path, unchanged


def test_auto_device_is_the_jobs_gpu(monkeypatch, caplog):
    """Under Slurm, CUDA_VISIBLE_DEVICES holds the job's GPU, which torch numbers cuda:0:
    `device: auto` resolves to it and logs what the job was given."""
    import torch

    from bpaitac.model import network as models

    monkeypatch.setattr(models, "_LOGGED", set())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("SLURM_JOB_GPUS", "3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"GPU{i}")
    with caplog.at_level("INFO", logger="bpaitac.model.network"):
        device = models.resolve_device("auto")
    assert device == torch.device("cuda")
    assert "device auto -> cuda:0 (GPU0); CUDA_VISIBLE_DEVICES=3, SLURM_JOB_GPUS=3" in caplog.text
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # e.g. CUDA_VISIBLE_DEVICES=""
    assert models.resolve_device("auto") == torch.device("cpu")


def test_make_slurm_profile_installs_it_by_name(tmp_path):
    """`make slurm-profile` puts the profile where `snakemake --profile slurm` looks."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    for _ in range(2):  # twice: a rerun replaces its own link
        make = ["make", "-s", "-C", str(ROOT), "slurm-profile"]
        proc = subprocess.run(make, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    lookup = "from snakemake.cli import get_profile_dir as g; print(g('slurm')[1])"
    found = subprocess.run(
        [sys.executable, "-c", lookup],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).resolve() == ROOT / "profiles" / "slurm" / "config.yaml"


def test_skips_with_a_reason_where_slurm_cannot_be_installed(monkeypatch):
    import slurm_cluster

    monkeypatch.setattr(slurm_cluster.shutil, "which", lambda name: None)
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 1000)
    assert "needs root" in why_unavailable()
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 0)
    assert "apt-get is not available" in why_unavailable()
    assert "not installed" in why_unavailable(install=False)
