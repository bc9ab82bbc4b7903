#!/usr/bin/env bash
# The GPU tables of benchmarks/optimizer_overhead.py (fp32 and bf16 autocast, plus the selection table) on a
# borrowed GPU machine (the workplace's `device` tool: torch 2.11 preinstalled, no network, no pydantic).
#
# 1. Here, once (needs the network):      bash benchmarks/device/optimizer_gpu.sh prepare
#    downloads the wheels the machine lacks (pydantic and its needs, the versions of .venv, for CPython 3.12
#    x86-64) into .device_wheels/ and adds that folder to .git/info/exclude, so it travels only when carried
#    and is never committed.
# 2. There:  run(command="bash benchmarks/device/optimizer_gpu.sh", carry=[".device_wheels"], timeout_s=540)
#    The benchmark itself is stopped after RUN_LIMIT seconds (default 420), so the call ends inside its limit
#    with the log in $OUT/optimizer_gpu.log whatever happens.
# 3. Back here:  .venv/bin/python benchmarks/optimizer_overhead.py --from-json <files_at>/optimizer_gpu.json
#    prints the tables and writes the optimizer_overhead_gpu section of BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
WHEELS=.device_wheels
# The wheels pydantic needs beyond what the machine's image holds; typing_extensions too, since pydantic_core
# needs a recent one and the image's version is unknown.
PACKAGES=(pydantic pydantic_core annotated_types typing_inspection typing_extensions)

if [ "${1:-}" = prepare ]; then
    python=.venv/bin/python
    [ -x "$python" ] || { echo "prepare: $python not found; run it from a checkout with the project's .venv (make)" >&2; exit 1; }
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    for name in "${PACKAGES[@]}"; do
        version=$("$python" -c "from importlib.metadata import version; print(version('$name'))")
        "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEELS" "$name==$version"
    done
    grep -qxF "/$WHEELS/" .git/info/exclude 2>/dev/null || echo "/$WHEELS/" >>.git/info/exclude
    ls -l "$WHEELS"
    exit 0
fi

: "${OUT:?OUT is not set: this part runs on the GPU machine through the device tool; see the header of $0}"
ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels in $WHEELS: run 'bash $0 prepare' here and carry $WHEELS" >&2; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
# The project is not installed there. pyproject maps the top-level folders backends/, passes/, frontends/ and
# examples/ to asgnas_ir.*; in this throwaway copy of the tree, links inside asgnas_ir/ give the same names
# without a build (no setuptools or network needed).
if ! python3 -c "import asgnas_ir.backends.torch" 2>/dev/null; then
    for folder in backends passes frontends examples; do ln -sfn "../$folder" "asgnas_ir/$folder"; done
fi
python3 -c "import torch, asgnas_ir.backends.torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader || true

export PYTHONUNBUFFERED=1
timeout "${RUN_LIMIT:-420}" python3 benchmarks/optimizer_overhead.py --device cuda --no-report \
    --json "$OUT/optimizer_gpu.json" "$@" 2>&1 | tee "$OUT/optimizer_gpu.log"
