from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connections, transaction

from audit.privileges import grant_runtime, runtime_grants


class Command(BaseCommand):
    help = (
        "Give the application's runtime role its privileges: read and write the registry, only "
        "append to the audit trail. Run as the tables' owner after every migrate "
        "(e.g. manage.py audit_grants warden_app --database owner)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("role", help="the PostgreSQL role the application connects as")
        parser.add_argument("--database", default="default", help="connection of the tables' owner")
        parser.add_argument("--print", action="store_true", help="print the SQL instead of running it")

    def handle(self, *args: Any, role: str, database: str, **options: Any) -> None:
        try:
            if options["print"]:
                self.stdout.write(";\n".join(runtime_grants(role)) + ";")
                return
            with transaction.atomic(using=database):
                statements = grant_runtime(connections[database], role)
        except (ValueError, NotImplementedError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{role}: {len(statements)} statements applied")
