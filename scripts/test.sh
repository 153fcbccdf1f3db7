#!/usr/bin/env bash
# Set up a fresh virtual environment with everything the tests need, then run them.
# Usage: scripts/test.sh [pytest args]      (VENV=path to use another environment)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch pinned: 2.13.0 is the CPU build this project tests against (any other spec pulls CUDA).
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[test,torch]"
# fastai for tests/integrations/test_fastai.py: its requirements pull torchvision (which replaces
# torch==2.13.0), and its core never imports torchvision, so its pure-Python dependencies first,
# then fastai itself without dependencies.
"$VENV/bin/python" -m pip install -q fastcore fasttransform fastprogress fastdownload \
    "plum-dispatch<2.10" requests scipy
"$VENV/bin/python" -m pip install -q --no-deps "fastai==2.8.12"
"$VENV/bin/python" -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
"$VENV/bin/ruff" check src tests benchmarks
"$VENV/bin/mypy"
"$VENV/bin/lint-imports"   # the one-way layers of .importlinter
"$VENV/bin/python" -m pytest "$@"
# The documentation: --strict turns a broken reference or docstring into a failure.
"$VENV/bin/mkdocs" build --strict --quiet --site-dir "$(mktemp -d)"
