#!/usr/bin/env bash
# robomimic in a venv of its own, used only by bench/vs_robomimic.py (its pins, e.g. transformers==4.41.2, must not
# touch the project's .venv). Installed from its public source: a checkout or snapshot of
# https://github.com/ARISE-Initiative/robomimic (tested at d309eae, v0.5.0).
# Usage: bash bench/robomimic/setup.sh ROBOMIMIC_SRC [VENV=.venv-robomimic]
set -euo pipefail
export PIP_NO_CACHE_DIR=1
SRC=${1:?usage: setup.sh ROBOMIMIC_SRC [VENV]}
VENV=${2:-.venv-robomimic}
[ -f "$SRC/setup.py" ] || { echo "setup.sh: $SRC has no setup.py (expected a robomimic checkout)" >&2; exit 2; }
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first, the project's pin (a bare `torch` pulls CUDA packages on CPU machines); TORCH_INDEX_URL as in install.sh.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
"$VENV/bin/python" -m pip install -q torchvision "torch==$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
# egl_probe (a GPU-selection helper for robomimic's own env wrapper, built with cmake) is left out: training runs
# robomimic's trainer with rollouts off, and the bench scores its policy in this project's env.
grep -v egl_probe <("$VENV/bin/python" - "$SRC" <<'PY'
import ast, sys, pathlib
tree = ast.parse(pathlib.Path(sys.argv[1], "setup.py").read_text())
for node in ast.walk(tree):
    if isinstance(node, ast.keyword) and node.arg == "install_requires":
        print("\n".join(ast.literal_eval(node.value)))
PY
) > "$VENV/requirements.txt"
# six: imported by robomimic.config, not declared in its setup.py.
echo six >> "$VENV/requirements.txt"
"$VENV/bin/python" -m pip install -q -r "$VENV/requirements.txt"
"$VENV/bin/python" -m pip install -q --no-deps "$SRC"
# robomimic's trainer lives in scripts/, which its package leaves out: run.py runs it from here.
rm -rf "$VENV/robomimic-scripts" && cp -r "$SRC/robomimic/scripts" "$VENV/robomimic-scripts"
"$VENV/bin/python" -c "import robomimic, torch; print('robomimic', robomimic.__version__, 'torch', torch.__version__)"
