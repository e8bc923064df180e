"""Run the whole platform locally in one terminal: web server, Celery worker and beat, and
the upstream simulators with the demo organization connected to them.

Used by platform/start.sh on embedded defaults (SQLite, filesystem broker); it works the
same against PostgreSQL and Redis. Ctrl-C stops every process.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from integrations.demo import demo_connect
from integrations.tasks import schedule_due_syncs_task
from tenants.demo import demo_seed

BASE_DIR = Path(settings.BASE_DIR)


class Command(BaseCommand):
    help = "Migrate, seed the demo organization, then run web + worker + beat until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-demo", action="store_true", help="skip the demo organization")
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
        parser.add_argument("--simulator-port", type=int, default=8101,
                            help="first of four ports for the upstream simulators (0: don't start them)")

    def handle(self, *args, host, port, no_demo, concurrency, simulator_port, **options):
        call_command("migrate", interactive=False, verbosity=0)
        login = None if no_demo else demo_seed()
        python = sys.executable
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        processes = {}
        simulator_urls = {}
        if simulator_port:
            # The simulators listen on loopback: allow it for this local run only.
            env["UPSTREAM_ALLOW_PRIVATE"] = "true"
            processes["simulators"], simulator_urls = self._start_simulators(python, simulator_port, env)
        commands = {
            "web": [python, "-m", "gunicorn", "config.wsgi", "-c", str(BASE_DIR / "platform" / "gunicorn.conf.py"),
                    "--bind", f"{host}:{port}"],
            "worker": [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
                       "--concurrency", str(concurrency), "--without-gossip", "--without-mingle"],
            "beat": [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
                     "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME],
        }
        processes.update({name: subprocess.Popen(cmd, cwd=BASE_DIR, env=env) for name, cmd in commands.items()})
        if login and simulator_urls:
            connections = demo_connect(asleep_url=simulator_urls["asleep"], beddit_url=simulator_urls["beddit"])
            schedule_due_syncs_task.delay()
            self.stdout.write(f"Syncing demo nights from the simulators ({len(connections)} connections)...")
        url = f"http://{host}:{port}"
        self.stdout.write(self.style.SUCCESS(f"\nSleep platform running at {url}/"))
        self.stdout.write(f"  Dashboard:   {url}/login/")
        self.stdout.write(f"  API docs:    {url}/api/docs/      (after logging in, or with a token)")
        self.stdout.write(f"  Admin:       {url}/admin/")
        if login:
            self.stdout.write(f"  Login:       {login.users['owner']} / {login.password}")
            self.stdout.write(
                "  Other roles: " + ", ".join(login.users[r] for r in ("admin", "hr", "member"))
                + " (same password)"
            )
        for provider, sim_url in simulator_urls.items():
            self.stdout.write(f"  Simulator:   {provider:<16} {sim_url}")
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

    def _start_simulators(self, python, first_port, env):
        """Start the four simulators in one process; wait until each prints its URL."""
        process = subprocess.Popen(
            [python, "-m", "integrations.simulators.server", "all", "--port", str(first_port)],
            cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, text=True,
        )
        urls = {}
        deadline = time.time() + 60
        while len(urls) < 4 and time.time() < deadline:
            line = process.stdout.readline()
            if not line:
                if process.poll() is not None:
                    raise SystemExit(f"simulators exited with code {process.returncode} (ports in use?)")
                continue
            if line.startswith("SIMULATOR "):
                _, provider, url = line.split()
                urls[provider] = url
        if len(urls) < 4:
            process.kill()
            raise SystemExit("simulators did not start within 60 s")
        # Keep reading their output so a full pipe can never block them.
        threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
        return process, urls
