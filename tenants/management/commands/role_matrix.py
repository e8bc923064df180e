from django.core.management.base import BaseCommand

from tenants.api.route_walk import role_matrix_markdown


class Command(BaseCommand):
    help = "Print the role matrix of every tenant API route as a Markdown table (for the README)."

    def handle(self, *args, **options):
        self.stdout.write(role_matrix_markdown())
