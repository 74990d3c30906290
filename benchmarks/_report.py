"""The one helper every benchmark uses to write its figures: ``--json`` (default
``results/benchmarks/<name>.json`` under the checkout) with the machine, the command and the
figures the benchmark printed."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def add_json_argument(parser: argparse.ArgumentParser, name: str) -> None:
    """Add ``--json PATH`` (default ``results/benchmarks/<name>.json``; ``-`` writes nothing)."""
    parser.add_argument(
        "--json",
        default=str(ROOT / "results" / "benchmarks" / f"{name}.json"),
        help="write the figures here as JSON ('-': do not write); default %(default)s",
    )


def machine() -> dict[str, Any]:
    """CPU, cores, Python and torch (when imported) of this run; the CUDA device if visible."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def write_report(path: str | os.PathLike, name: str, results: Any) -> None:
    """Write ``{"benchmark", "command", "time", "machine", "results"}`` to ``path`` (JSON),
    creating its directory; ``path`` ``-`` writes nothing."""
    if str(path) == "-":
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "results": results,
    }
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    tmp.replace(out)
    print(f"figures written to {out}")
