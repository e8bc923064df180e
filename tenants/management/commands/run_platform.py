"""Run the whole platform locally in one terminal: web server, Celery worker and beat.

Used by platform/start.sh on embedded defaults (SQLite, filesystem broker); it works the
same against PostgreSQL and Redis. Ctrl-C stops every process.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from tenants.demo import demo_seed

BASE_DIR = Path(settings.BASE_DIR)


class Command(BaseCommand):
    help = "Migrate, seed the demo organization, then run web + worker + beat until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-demo", action="store_true", help="skip the demo organization")
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes")

    def handle(self, *args, host, port, no_demo, concurrency, **options):
        call_command("migrate", interactive=False, verbosity=0)
        login = None if no_demo else demo_seed()
        python = sys.executable
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        commands = {
            "web": [python, "-m", "gunicorn", "config.wsgi", "-c", str(BASE_DIR / "platform" / "gunicorn.conf.py"),
                    "--bind", f"{host}:{port}"],
            "worker": [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
                       "--concurrency", str(concurrency), "--without-gossip", "--without-mingle"],
            "beat": [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
                     "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME],
        }
        processes = {name: subprocess.Popen(cmd, cwd=BASE_DIR, env=env) for name, cmd in commands.items()}
        url = f"http://{host}:{port}"
        self.stdout.write(self.style.SUCCESS(f"\nSleep platform running at {url}/"))
        self.stdout.write(f"  API docs:    {url}/api/docs/      (log in at {url}/admin/ first, or use a token)")
        self.stdout.write(f"  Admin:       {url}/admin/")
        if login:
            self.stdout.write(f"  Login:       {login.users['owner']} / {login.password}")
            self.stdout.write(
                "  Other roles: " + ", ".join(login.users[r] for r in ("admin", "hr", "member"))
                + " (same password)"
            )
        self.stdout.write("  Stop with Ctrl-C.\n")

        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    self.stderr.write(f"{name} exited with code {process.returncode}; stopping.")
                    exit_code = process.returncode or 1
                    stopping = True
            time.sleep(0.5)
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.time() + 40
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                process.kill()
        sys.exit(exit_code)
