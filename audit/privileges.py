"""Two database roles (PostgreSQL): the owner runs migrations and owns every table; the
runtime role, which the application connects as, may read and write the registry but only
append to the ledger, through ``warden_audit_chain``, and not rename Django's permissions or
content types. It cannot INSERT an event of its own making, UPDATE, DELETE or TRUNCATE the audit
tables, and as it owns nothing it cannot ALTER or DROP them or switch their triggers off."""

from __future__ import annotations

import re
from typing import Any

from audit.triggers import CHECKPOINTS, EVENTS, HEAD, PENDING

ROLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")


def runtime_grants(role: str) -> list[str]:
    if not ROLE_RE.match(role):
        raise ValueError(f"{role!r} is not a plain PostgreSQL role name (lower case letters, digits, '_')")
    return [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        # Events are appended by ``warden_audit_chain``, which runs with the owner's rights: the
        # runtime role reads the trail and the head; it neither inserts an event nor moves the
        # head (with a time of its choosing). Locking the head (``FOR UPDATE``, as a checkpoint
        # does) needs an UPDATE privilege: on ``id`` alone, which the head's trigger refuses.
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON {EVENTS} FROM {role}",
        f"GRANT SELECT ON {EVENTS} TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON {CHECKPOINTS} FROM {role}",
        f"GRANT SELECT, INSERT ON {CHECKPOINTS} TO {role}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON {HEAD} FROM {role}",
        f"GRANT SELECT, UPDATE (id) ON {HEAD} TO {role}",
        # Events waiting for their transaction's commit to chain them (``audit.triggers``).
        f"REVOKE UPDATE, TRUNCATE, TRIGGER, REFERENCES ON {PENDING} FROM {role}",
        f"GRANT SELECT, INSERT, DELETE ON {PENDING} TO {role}",
        # What a permission means: object permissions are read by their codename, so renaming one
        # would turn every access to a model into a validator's assignment, with no event and no
        # guard. The application may add and remove them (a content type made on first use,
        # ``remove_stale_contenttypes``, whose revocations are recorded), not rename them.
        f"REVOKE UPDATE, TRUNCATE, TRIGGER, REFERENCES ON auth_permission, django_content_type FROM {role}",
        f"GRANT SELECT, INSERT, DELETE ON auth_permission, django_content_type TO {role}",
    ]


def grant_runtime(connection: Any, role: str) -> list[str]:
    """Apply the runtime role's privileges (idempotent; run again after each migrate)."""
    if connection.vendor != "postgresql":
        raise NotImplementedError("database roles are a PostgreSQL feature; SQLite has none")
    statements = runtime_grants(role)
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    return statements
