from django.core.management.base import BaseCommand

from tenants.demo import demo_seed


class Command(BaseCommand):
    help = "Create the demo organization with departments, participants and one login per role."

    def add_arguments(self, parser):
        parser.add_argument("--participants", type=int, default=200)

    def handle(self, *args, participants: int, **options):
        login = demo_seed(participants=participants)
        for role, username in login.users.items():
            self.stdout.write(f"{role:>7}: {username} / {login.password}")
