import os
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[3]


def test_it_serves_a_simulator_from_manage_py(tmp_path):
    env = {**os.environ, "DJANGO_DEBUG": "true", "PLATFORM_ENV_FILE": "/nonexistent",
           "PLATFORM_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "simulate", "asleep", "--port", "0", "--config", '{"keys": ["k"]}'],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("SIMULATOR asleep http://127.0.0.1:"), line
        url = line.split()[-1]
        response = httpx.get(f"{url}/data/v1/sessions", headers={"x-api-key": "wrong", "x-user-id": "u"})
        assert response.status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=20)
