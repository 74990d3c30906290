#!/usr/bin/env bash
# The GPU check (issue 27), for the day a CUDA device is lent: in one run, under 8 minutes,
#   1. training throughput at paper size (F=300, D=9, 90 tasks) in the CUDA modes fp32, tf32,
#      bf16 and bf16+compile, with the paper-size epoch estimate (benchmarks/train_throughput.py);
#   2. DeepSHAP attributions/s on CUDA against their bound (benchmarks/attribution.py);
#   3. variant scoring on CUDA at paper size against its bound (benchmarks/variants.py);
#   4. the tiny workflow end to end (config/tiny.yaml, device: auto, training.amp and
#      training.compile on, so the bf16 and compile paths run for real);
# then prints one table. Exits nonzero when a step fails. Without a CUDA device it stops at
# once with "no CUDA device" (exit 2): nothing here measures the CPU (make bench does).
#
#   bash benchmarks/gpu_check.sh            # from the checkout; OUT=dir keeps the JSON and logs
#
# It uses .venv/bin/python when there is one, else python3 (PYTHON=... overrides), and installs
# the checkout into it (pip install --no-deps -e .) when bpaitac does not import.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUT=${OUT:-$ROOT/results/benchmarks/gpu}

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$OUT/numba-cache}
start=$(date +%s)

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "error: $PYTHON cannot import torch; install the project first (make test sets up .venv)" >&2
  exit 1
fi
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: no CUDA device (torch.cuda.is_available() is False): this script measures the GPU only; use make bench on a CPU" >&2
  exit 2
fi
if ! "$PYTHON" -c "import bpaitac, tangermeme, snakemake" 2>/dev/null; then
  echo "installing the checkout into $PYTHON (pip install --no-deps -e .)"
  "$PYTHON" -m pip install --quiet --no-deps -e . || { echo "error: install failed" >&2; exit 1; }
  "$PYTHON" -c "import bpaitac, tangermeme, snakemake" || {
    echo "error: bpaitac's dependencies are missing (pip install -e . needs the package index)" >&2
    exit 1
  }
fi
mkdir -p "$OUT"
"$PYTHON" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"

failed=()
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s)
  echo "== $name (limit ${limit}s)"
  if timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; then
    echo "   ok, $(($(date +%s) - t0)) s"
  else
    echo "   FAILED (exit $?), $(($(date +%s) - t0)) s; last lines of $OUT/$name.log:"
    tail -n 15 "$OUT/$name.log" | sed 's/^/   | /'
    failed+=("$name")
  fi
}

step train 120 "$PYTHON" benchmarks/train_throughput.py --skip-cpu --gpu-steps 20 \
  --json "$OUT/train_throughput.json"
step attribution 60 "$PYTHON" benchmarks/attribution.py --device cuda --sequences 2 --rounds 1 \
  --json "$OUT/attribution.json"
step variants 60 "$PYTHON" benchmarks/variants.py --size paper --device cuda --variants 2048 \
  --json "$OUT/variants.json"

# The tiny workflow with device: auto, bf16 autocast and torch.compile, in a scratch directory.
work=$(mktemp -d "${TMPDIR:-/tmp}/bpaitac-gpu-tiny.XXXXXX")
"$PYTHON" - "$ROOT" "$work" <<'PY'
import sys
from pathlib import Path

import yaml

root, work = Path(sys.argv[1]), Path(sys.argv[2])
config = yaml.safe_load((root / "config" / "tiny.yaml").read_text())
config["celltypes"] = str(root / config["celltypes"])
config["device"] = "auto"
config.setdefault("training", {}).update({"amp": True, "compile": True})
(work / "tiny_gpu.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
PY
BIN=$(dirname "$PYTHON")
step workflow 200 env PATH="$BIN:$PATH" "$PYTHON" -m snakemake \
  --snakefile "$ROOT/workflow/Snakefile" --directory "$work" \
  --configfile "$work/tiny_gpu.yaml" --cores 8
# What the training logs say about the device (resolve_device logs it once per job).
grep -h "device " "$work"/logs/tiny/train/*/*.log 2>/dev/null | head -n 3 | tee "$OUT/workflow_device.txt"

"$PYTHON" - "$OUT" <<'PY'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])


def load(name):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


rows = []
train = load("train_throughput")
if train:
    for r in train["results"]["rows"]:
        rows.append((f"train {r['mode']} (paper size)", f"{r['seq_per_s']:.0f} seq/s",
                     f"epoch of 267,237 OCRs: {r['paper_epoch_min']:.2f} min"))
attr = load("attribution")
if attr:
    for r in attr["results"]:
        rows.append((f"DeepSHAP {r['network']} ({r['device']})",
                     f"{r['attr_per_s']['deep_shap']:.2f} attr/s",
                     f"bound {r['attr_per_s']['bound']:.2f}: ratio {r['ratio_to_bound']['deep_shap']:.2f}"))
var = load("variants")
if var:
    r = var["results"]
    rows.append((f"variant scoring {r['size']} ({r['device']})", f"{r['variants_per_s']:.0f} var/s",
                 f"bound {r['bound_variants_per_s']:.0f}: ratio {r['ratio_to_bound']:.2f}"))
device = (train or attr or var or {}).get("machine", {}).get("cuda_device", "?")
print(f"\nGPU check on {device}")
width = max([len(r[0]) for r in rows] + [10])
for name, rate, note in rows:
    print(f"{name:<{width}}  {rate:>14}  {note}")
PY
echo "tiny workflow (device auto, amp, compile): $([[ " ${failed[*]} " == *" workflow "* ]] && echo FAILED || echo ok)"
rm -rf "$work"
echo "total $(($(date +%s) - start)) s; JSON and logs in $OUT"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
