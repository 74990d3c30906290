"""Static checks of the workflow: dry-runs of the full DAG, lint, formatting, env pins."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, **kw)


@pytest.mark.parametrize(
    "configfile", ["config/config.yaml", "config/immgen.yaml", "config/validate.yaml"]
)
def test_dry_run_full_dag(configfile):
    proc = run(["snakemake", "-n", "--quiet", "rules", "--configfile", configfile])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_lint_clean():
    proc = run(["snakemake", "--lint"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out


def test_snakefmt_clean():
    proc = run(["snakefmt", "--check", "workflow"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_clean():
    proc = run(["ruff", "check", "."])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run(["ruff", "format", "--check", "."])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _pyproject_pins() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = meta["dependencies"] + meta["optional-dependencies"]["dev"]
    return {
        m.group(1).lower(): m.group(2)
        for d in deps
        if (m := re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;\s]+)", d))
    }


# conda-forge names of PyPI packages where they differ
CONDA_NAMES = {"torch": "pytorch"}


def _env_pins(path: Path) -> dict[str, str]:
    pins = {}
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*=?=\s*([^=\s]+)", item)
            if m:
                pins[m.group(1).lower()] = m.group(2)
    return pins


def test_conda_envs_match_pyproject_pins():
    pins = _pyproject_pins()
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs, "no conda environments under envs/"
    checked = 0
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        assert "nodefaults" in spec["channels"], f"{env.name}: add the nodefaults channel"
        for name, version in _env_pins(env).items():
            pypi = next((k for k, v in CONDA_NAMES.items() if v == name), name)
            if pypi in pins:
                checked += 1
                assert version == pins[pypi], (
                    f"{env.name}: {name}={version}, pyproject {pins[pypi]}"
                )
    assert checked > 0


def test_every_rule_has_conda_and_log():
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        for block in re.split(r"\n(?=[ \t]*rule )", text)[1:]:
            name = re.match(r"\s*rule (\w+)", block).group(1)
            if name == "all":
                continue
            assert "conda:" in block, f"{smk.name}: rule {name} has no conda:"
            if "output:" in block:
                assert "log:" in block, f"{smk.name}: rule {name} writes data but has no log:"
