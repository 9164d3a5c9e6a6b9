"""Delete error events older than the retention period (LMX_ERROR_RETENTION_DAYS)."""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from monitoring.models import ErrorEvent


class Command(BaseCommand):
    help = "Delete error events older than --days (default: LMX_ERROR_RETENTION_DAYS)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None)

    def handle(self, *args, days=None, **options):
        days = settings.LMX_ERROR_RETENTION_DAYS if days is None else days
        if days < 0:
            raise CommandError("--days must be >= 0")
        cutoff = timezone.now() - timedelta(days=days)
        deleted, _ = ErrorEvent.objects.filter(created_at__lt=cutoff).delete()
        self.stdout.write(f"Deleted {deleted} error events older than {days} days.")
