#!/usr/bin/env bash
# Installs everything into .venv: Debian rendering libraries (when root), torch, the project and its test tools.
# Usage: bash install.sh            (idempotent; re-running only checks)
#        TORCH_INDEX_URL=...        (optional: where to take torch from, e.g. a CPU or CUDA wheel index)
set -euo pipefail
# No pip cache: it would hold a second copy of every wheel (over 1 GB) on machines with little disk.
export PIP_NO_CACHE_DIR=1
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

# Headless MuJoCo rendering (EGL by default, OSMesa selectable) needs these libraries.
DEB_PKGS="libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libosmesa6 libglib2.0-0"
missing=""
for p in $DEB_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install.sh: installing Debian packages:$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "install.sh: rendering needs the Debian packages:$missing -- run: sudo apt-get install -y$missing" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # torch first: a bare `torch` requirement would pull a multi-GB CUDA build on CPU machines.
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    .venv/bin/python -m pip install -q torch==2.13.0 --index-url "$TORCH_INDEX_URL"
  else
    .venv/bin/python -m pip install -q torch==2.13.0
  fi
fi
.venv/bin/python -m pip install -q -e ".[test]"
# robosuite logs warnings at every import unless a private macro file exists: keep only its errors.
.venv/bin/python - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("robosuite")
private = pathlib.Path(spec.origin).parent / "macros_private.py"
if not private.exists():
    private.write_text((private.parent / "macros.py").read_text().split("# Override with macros")[0]
                       .replace('CONSOLE_LOGGING_LEVEL = "INFO"', 'CONSOLE_LOGGING_LEVEL = "ERROR"'))
PY
echo "install.sh: done ($(.venv/bin/python -c 'import embodied, torch, mujoco; print("embodied", embodied.__version__, "torch", torch.__version__, "mujoco", mujoco.__version__)'))"
