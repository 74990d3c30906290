"""The benchmark plumbing: the JSON report, the optional bpnet-lite, the GPU-only check."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def run(*cmd: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(cmd, cwd=ROOT, env=full, capture_output=True, text=True, timeout=120)


def test_report_writes_machine_command_and_results(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from _report import write_report
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    out = tmp_path / "sub" / "x.json"
    write_report(out, "x", {"rate": 1.5})
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "x" and payload["results"] == {"rate": 1.5}
    assert payload["machine"]["cpu_count"] == os.cpu_count()
    write_report("-", "x", {})  # '-' writes nothing
    assert not Path("-").exists()


@pytest.mark.skipif(
    importlib.util.find_spec("bpnetlite") is not None, reason="bpnet-lite is installed"
)
def test_peers_skips_with_the_install_line_without_bpnet_lite(tmp_path):
    proc = run(sys.executable, "benchmarks/peers.py", "--json", str(tmp_path / "p.json"))
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stdout and "pip install --no-deps bpnet-lite==1.1.0" in proc.stdout
    assert not (tmp_path / "p.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_gpu_check_fails_clearly_without_cuda(tmp_path):
    proc = run("bash", "benchmarks/gpu_check.sh", PYTHON=sys.executable, OUT=str(tmp_path / "g"))
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr
    assert not (tmp_path / "g").exists()
