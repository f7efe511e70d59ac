from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import LedgerDisagrees, checkpoint_make


class Command(BaseCommand):
    help = "Make a signed checkpoint of the audit trail if one is due (or, with --force, whenever the head moved)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--force", action="store_true", help="do not wait for the interval")

    def handle(self, *args: Any, force: bool, **options: Any) -> None:
        try:
            checkpoint = checkpoint_make(force=force)
        except (ImproperlyConfigured, LedgerDisagrees) as exc:
            raise CommandError(str(exc)) from None
        if checkpoint is None:
            self.stdout.write("no checkpoint: none is due")
        else:
            self.stdout.write(f"checkpoint at #{checkpoint.size}, root {checkpoint.root_hash}")
