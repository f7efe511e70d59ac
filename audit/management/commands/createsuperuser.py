"""Django's ``createsuperuser``, with the new account recorded in the audit trail."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.management.commands import createsuperuser
from django.core.management import CommandError
from django.db import DEFAULT_DB_ALIAS, transaction

from audit.context import origin, where_run


class Command(createsuperuser.Command):
    help = createsuperuser.Command.help + " The new account is recorded in the audit trail (user.created)."

    def handle(self, *args: Any, **options: Any) -> Any:
        """Django's command, whose user is created (after the prompts, which hold no transaction
        open) in one transaction with the event that records it (``audit.accounts``), made by
        Warden, with who ran the command and where as its reason. The trail is written on the
        default database, so the account is made there too."""
        if options["database"] != DEFAULT_DB_ALIAS:
            raise CommandError("The audit trail that records the account is on the default database: create it there.")
        manager = self.UserModel._default_manager
        reason = where_run("createsuperuser")

        def create_superuser(**fields: Any) -> Any:
            with origin("createsuperuser-command", reason=reason), transaction.atomic():
                return type(manager).create_superuser(manager.db_manager(DEFAULT_DB_ALIAS), **fields)  # type: ignore[attr-defined]

        # Django's command calls ``_default_manager.db_manager(database).create_superuser``:
        # ``db_manager`` copies the manager with what is set on it, this function included. Set on
        # the process's one default manager while the command runs: a command runs alone.
        manager.create_superuser = create_superuser  # type: ignore[attr-defined]
        try:
            return super().handle(*args, **options)
        finally:
            del manager.create_superuser  # type: ignore[attr-defined]
