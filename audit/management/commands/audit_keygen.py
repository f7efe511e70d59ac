from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import signing


class Command(BaseCommand):
    help = (
        "Make an Ed25519 key pair for signing audit checkpoints and exports. Prints the settings to use, "
        "or with --out DIR writes DIR/audit-signing.key (for AUDIT_SIGNING_KEY_FILE, owner-only) and "
        "DIR/audit-verify.pub (for auditors: python -m audit.offline_verify BUNDLE --pubkey DIR/audit-verify.pub)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, help="write the pair into this directory instead of printing it")

    def handle(self, *args: Any, out: Path | None, **options: Any) -> None:
        private, public = signing.generate()
        if out is None:
            self.stdout.write(f"AUDIT_SIGNING_KEY={private}")
            self.stdout.write(f"AUDIT_VERIFY_KEYS={public}")
            self.stderr.write("Keep the signing key secret (AUDIT_SIGNING_KEY_FILE); give auditors the verify key.")
            return
        secret, shared = out / "audit-signing.key", out / "audit-verify.pub"
        if secret.exists():
            raise CommandError(f"{secret} exists: a new key would not verify what the old one signed")
        out.mkdir(parents=True, exist_ok=True)
        secret.touch(mode=0o600)
        secret.write_text(private + "\n")
        shared.write_text(public + "\n")
        self.stdout.write(f"wrote {secret} (secret: AUDIT_SIGNING_KEY_FILE={secret}) and {shared} (for auditors)")
