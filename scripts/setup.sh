#!/usr/bin/env bash
# Create (or reuse) .venv and install the toolkit with its test tools.
# torch==2.13.0 goes in first, on its own: any other torch spec can pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.synctalk-parity-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
# ray: `parity matrix --ray` and its tests. The filter silences setuptools' notice on every editable install of a
# package whose folder has another name ("Editable installation... folders with the same name"): nothing to act on.
PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install --quiet -e ".[test,ray]"
echo "$want" > "$stamp"
