from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit import export
from audit.context import where_run
from audit.policies import can_export
from common.errors import DomainError


def _moment(option: str, text: str | None) -> Any:
    if not text:
        return None
    try:
        moment = parse_datetime(text)
    except ValueError as exc:  # well formed, but no such day or time: 2026-02-30
        raise CommandError(f"{option}: {exc}") from None
    if moment is None:
        raise CommandError(f"{option}: expected an ISO 8601 date and time, such as 2026-11-01T00:00:00Z")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


class Command(BaseCommand):
    help = (
        "Export the audit trail (or part of it) as a signed bundle for auditors: a directory, or a zip "
        "when DESTINATION ends in .zip. Verify it with: python -m audit.offline_verify DESTINATION --pubkey KEY"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("destination", type=Path)
        parser.add_argument("--from", dest="occurred_after", help="events at or after this time (ISO 8601)")
        parser.add_argument("--to", dest="occurred_before", help="events before this time (ISO 8601)")
        parser.add_argument(
            "--model", default="", help="events about the model with this name now, under every name it has had"
        )
        parser.add_argument("--actor", default="", help="events by this user (username)")
        parser.add_argument("--action", default="", help="events with this action, e.g. version.created")
        parser.add_argument("--as", dest="as_user", default="", help="the auditor recorded as exporting (username)")
        parser.add_argument("--reason", default="", help="why the export is made; recorded in the trail")

    def handle(self, *args: Any, destination: Path, as_user: str, reason: str, **options: Any) -> None:
        actor = None
        if as_user:
            actor = get_user_model().objects.filter(username=as_user).first()
            if actor is None:
                raise CommandError(f"--as: there is no user {as_user!r}")
            decision = can_export(actor)
            if not decision:
                raise CommandError(f"--as: {decision.reason}")
        if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
            raise CommandError(f"{destination} already exists and is not an empty directory")
        try:
            selection = export.select(
                occurred_after=_moment("--from", options["occurred_after"]),
                occurred_before=_moment("--to", options["occurred_before"]),
                model=options["model"],
                actor=options["actor"],
                action=options["action"],
            )
            begun = export.export_begin(actor=actor, selection=selection, reason=reason or where_run("audit_export"))
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        manifest = export.export_to(begun, destination)
        self.stdout.write(
            f"exported {manifest['events']} events to {destination}, proven against signed checkpoint "
            f"#{begun.checkpoint.size}; recorded as audit event #{begun.record.seq}"
        )
