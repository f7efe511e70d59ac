"""Django's ``createsuperuser``, with the new account recorded in the audit trail."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.management.commands import createsuperuser
from django.db import transaction

from audit.context import origin, where_run


class Command(createsuperuser.Command):
    help = createsuperuser.Command.help + " The new account is recorded in the audit trail (user.created)."

    def handle(self, *args: Any, **options: Any) -> Any:
        """The whole command in one transaction with the event that records the account
        (``audit.accounts``), made by Warden, with who ran the command and where as its reason."""
        reason = where_run("createsuperuser")
        with origin("createsuperuser-command", reason=reason), transaction.atomic(using=options["database"]):
            return super().handle(*args, **options)
