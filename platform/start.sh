#!/usr/bin/env bash
# Install into ./.venv and run the platform on embedded defaults (SQLite, filesystem
# broker, no external service): web server, Celery worker and beat, with demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "Python 3.11 or newer is required (found $("$PYTHON" --version))." >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
mkdir -p var
if [ ! -f var/local.env ]; then
  # Secrets for this machine only, generated once and kept out of git (var/ is ignored).
  .venv/bin/python - <<'PY' > var/local.env
import secrets
from cryptography.fernet import Fernet
print(f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}")
print(f"FIELD_ENCRYPTION_KEYS={Fernet.generate_key().decode()}")
PY
  chmod 600 var/local.env
fi
exec .venv/bin/python manage.py run_platform "$@"
