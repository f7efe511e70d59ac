from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit.context import origin, where_run
from common.errors import DomainError
from registry import services


class Command(BaseCommand):
    help = "Create an API token for a user (an engineer or a service account) and print its secret once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("name", help="what the token is for, e.g. 'ci-pipeline'")
        parser.add_argument("--expires-days", type=int, default=None)

    def handle(self, *args: Any, username: str, name: str, expires_days: int | None, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            with origin("token-create-command"):
                _, secret = services.token_create(
                    actor=None, owner=user, name=name, expires_at=expires_at, reason=where_run("token_create")
                )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(secret)
