from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audit import signing


class Command(BaseCommand):
    help = "Make an Ed25519 key pair for signing audit checkpoints; prints the settings to use."

    def handle(self, *args: Any, **options: Any) -> None:
        private, public = signing.generate()
        self.stdout.write(f"AUDIT_SIGNING_KEY={private}")
        self.stdout.write(f"AUDIT_VERIFY_KEYS={public}")
        self.stderr.write("Keep the signing key secret (AUDIT_SIGNING_KEY_FILE); give auditors the verify key.")
