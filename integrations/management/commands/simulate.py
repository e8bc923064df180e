"""python manage.py simulate asleep|beddit|usleep|grand_challenge|all [--port N] [--config JSON] [--demo]

Serves the upstream simulators (integrations/simulators/server.py) until Ctrl-C: the same
arguments as `python -m integrations.simulators.server`.
"""

from django.core.management.base import BaseCommand

from integrations.simulators.server import main


class Command(BaseCommand):
    help = "Serve an upstream simulator (or all four) on loopback until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("args", nargs="*", help="provider and options, e.g. asleep --port 8101")

    def run_from_argv(self, argv):
        # Hand every argument after the command name to the simulators' own parser.
        main(argv[2:])
