#!/usr/bin/env bash
# Run the whole test suite. Embedded defaults unless DATABASE_URL / REDIS_URL are set
# (see README, "Running against PostgreSQL and Redis"). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "Python 3.11 or newer is required." >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
# The official U-Sleep and Grand Challenge clients, in a virtualenv of their own (see the file).
[ -x .venv-clients/bin/python ] || "$PYTHON" -m venv .venv-clients
.venv-clients/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-clients.txt
export SIM_CLIENTS_PYTHON="$PWD/.venv-clients/bin/python"
exec .venv/bin/python -m pytest "$@"
