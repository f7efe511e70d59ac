from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.verify import INTACT, verify

SHOWN = 50


class Command(BaseCommand):
    help = (
        "Verify the audit trail: hashes, links, sequence, columns against their canonical form, "
        "timestamps, the signed checkpoints and their witness copies. Exit 0 intact, 2 a tampered row, "
        "3 a gap or fork, 4 a disagreement with a signed or witnessed checkpoint."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = verify()
        if report.code == INTACT:
            span = f"#{report.first_seq}..#{report.last_seq}" if report.events else "empty"
            self.stdout.write(f"intact: {report.events} events ({span}), head {report.head_hash}")
            return
        findings = report.findings or []
        for finding in findings[:SHOWN]:
            self.stderr.write(finding.message)
        if len(findings) > SHOWN:
            self.stderr.write(f"… and {len(findings) - SHOWN} more")
        raise CommandError(f"audit trail NOT intact: {len(findings)} finding(s)", returncode=report.code)
