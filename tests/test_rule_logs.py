"""A failing rule's log file holds its error (on a cluster the log is all a user sees)."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_failing_script_rule_writes_its_traceback_to_the_log(tmp_path):
    (tmp_path / "fail.py").write_text(
        textwrap.dedent(
            """
            from bpaitac.io import InputError, setup_logging

            setup_logging(snakemake.log[0])
            raise InputError("input.tsv line 3: bad value; fix the table")
            """
        )
    )
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            """
            rule fail:
                output: "out.txt"
                log: "logs/fail.log"
                script: "fail.py"
            """
        )
    )
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        ["snakemake", "--cores", "1", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    log = (tmp_path / "logs" / "fail.log").read_text()
    assert "Traceback" in log and "InputError" in log, log
    assert "input.tsv line 3: bad value; fix the table" in log
    assert not (tmp_path / "out.txt").exists()


def test_every_script_logs_to_its_rule_log_first():
    """Each entry script sets up logging (and with it the uncaught-exception hook) before work."""
    for script in sorted((ROOT / "scripts").glob("*.py")):
        text = script.read_text()
        assert re.search(r"^setup_logging\(snakemake\.log\[0\]\)", text, re.M), script.name
        body = text.split("setup_logging(snakemake.log[0])", 1)[1]
        assert "snakemake.output" in body or "snakemake.rule" in body or "params" in body, (
            script.name
        )


def test_an_error_logged_by_the_script_is_not_logged_twice(tmp_path):
    """Scripts that log their own failure (log_exception) are not logged again by the hook."""
    script = tmp_path / "s.py"
    log = tmp_path / "s.log"
    script.write_text(
        textwrap.dedent(
            f"""
            import logging
            from bpaitac.io import log_exception, setup_logging

            setup_logging({str(log)!r})
            try:
                raise ValueError("boom once")
            except ValueError:
                log_exception(logging.getLogger("s"), "step failed")
                raise
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    text = log.read_text()
    assert text.count("ValueError: boom once") == 1, text
