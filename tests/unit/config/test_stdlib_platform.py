"""`platform/` is the deployment folder and must never shadow the standard library module.

CPython's uuid imports platform and calls platform.system(); Django imports uuid early. A
platform/__init__.py at the project root would break Django (style.md, Part 3).
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROBE = "import uuid, platform; assert callable(platform.system); print(platform.system(), uuid.uuid4().version)"


def test_it_keeps_platform_a_plain_folder():
    assert (ROOT / "platform").is_dir()
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_it_imports_uuid_and_the_stdlib_platform_from_the_project_root():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Linux", "4"]


def test_it_imports_them_under_manage_py():
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"DJANGO_DEBUG": "true", "PATH": "/usr/bin:/bin", "PLATFORM_ENV_FILE": "/nonexistent"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["Linux", "4"]
