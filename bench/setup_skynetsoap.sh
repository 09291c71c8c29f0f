#!/usr/bin/env bash
# Create bench/.skynetsoap-venv with skynetsoap 1.0.1, for the side-by-side benchmark.
#
# skynetsoap 1.0.1 declares Python >= 3.12 but runs on 3.11. A plain
# `pip install --ignore-requires-python skynetsoap==1.0.1` on 3.11 fails (pip then
# picks numpy/scipy releases that only build on 3.12), so: install its dependencies
# with normal resolution first, then skynetsoap itself without dependencies
# (reference/skynetsoap.md §17). The venv is separate from soapd's .venv so that
# neither package's pins disturb the other.
#
# Usage: bench/setup_skynetsoap.sh [PYTHON]   (default: the interpreter of .venv)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.skynetsoap-venv"
py="${1:-$here/../.venv/bin/python}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import skynetsoap' 2>/dev/null; then
    echo "skynetsoap venv ready: $venv"
    exit 0
fi
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet \
    'astropy' 'astroquery' 'numpy>=2' 'scipy' 'sep>=1.4' 'polars' 'pandas' 'pyarrow' \
    'matplotlib' 'requests' 'tqdm'
"$venv/bin/python" -m pip install --quiet --no-deps --ignore-requires-python 'skynetsoap==1.0.1'
"$venv/bin/python" -c 'import skynetsoap, sep; print("skynetsoap", skynetsoap.__version__ if hasattr(skynetsoap, "__version__") else "1.0.1", "sep", sep.__version__)'
echo "skynetsoap venv ready: $venv"
