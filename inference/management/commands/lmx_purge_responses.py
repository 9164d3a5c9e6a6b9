"""Delete stored responses older than the retention period (LMX_RESPONSE_RETENTION_DAYS)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference.stored_responses import stored_responses_purge


class Command(BaseCommand):
    help = "Delete stored responses older than --days (default: LMX_RESPONSE_RETENTION_DAYS)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None)

    def handle(self, *args, days=None, **options):
        days = settings.LMX_RESPONSE_RETENTION_DAYS if days is None else days
        if days < 0:
            raise CommandError("--days must be >= 0")
        deleted = stored_responses_purge(days=days)
        self.stdout.write(f"Deleted {deleted} stored responses older than {days} days.")
