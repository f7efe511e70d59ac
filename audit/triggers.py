"""The database's own refusal to change the ledger, and the bypass guard on governed state.

Installed by migrations (``install`` is idempotent: a later migration that rebuilds an audit
table on SQLite calls it again). PostgreSQL triggers are ``ENABLE ALWAYS`` so that
``SET session_replication_role = replica`` does not skip them; only the tables' owner can
disable them, which is why the application runs as a role that owns nothing
(``manage.py audit_grants``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from audit.ledger import GENESIS

EVENTS = "audit_auditevent"
HEAD = "audit_chainhead"
CHECKPOINTS = "audit_checkpoint"

_POSTGRES = f"""
CREATE OR REPLACE FUNCTION warden_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE OR REPLACE FUNCTION warden_audit_head_advance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq <> OLD.seq + 1 OR NOT EXISTS (
        SELECT 1 FROM {EVENTS}
        WHERE seq = NEW.seq AND prev_hash = OLD.chain_hash AND chain_hash = NEW.chain_hash
    ) THEN
        RAISE EXCEPTION 'the audit chain head only moves to the event appended after it (at %)', OLD.seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

ALTER TABLE {EVENTS} ADD COLUMN IF NOT EXISTS txid bigint NOT NULL DEFAULT txid_current();
CREATE INDEX IF NOT EXISTS audit_event_txid ON {EVENTS} (txid);

DROP TRIGGER IF EXISTS audit_event_append_only ON {EVENTS};
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON {EVENTS}
    FOR EACH ROW EXECUTE FUNCTION warden_audit_refuse();
DROP TRIGGER IF EXISTS audit_event_no_truncate ON {EVENTS};
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON {EVENTS}
    FOR EACH STATEMENT EXECUTE FUNCTION warden_audit_refuse();
DROP TRIGGER IF EXISTS audit_checkpoint_append_only ON {CHECKPOINTS};
CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON {CHECKPOINTS}
    FOR EACH ROW EXECUTE FUNCTION warden_audit_refuse();
DROP TRIGGER IF EXISTS audit_checkpoint_no_truncate ON {CHECKPOINTS};
CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON {CHECKPOINTS}
    FOR EACH STATEMENT EXECUTE FUNCTION warden_audit_refuse();
DROP TRIGGER IF EXISTS audit_head_advance ON {HEAD};
CREATE TRIGGER audit_head_advance BEFORE UPDATE ON {HEAD}
    FOR EACH ROW EXECUTE FUNCTION warden_audit_head_advance();
DROP TRIGGER IF EXISTS audit_head_no_delete ON {HEAD};
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON {HEAD}
    FOR EACH ROW EXECUTE FUNCTION warden_audit_refuse();
DROP TRIGGER IF EXISTS audit_head_no_truncate ON {HEAD};
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON {HEAD}
    FOR EACH STATEMENT EXECUTE FUNCTION warden_audit_refuse();

ALTER TABLE {EVENTS} ENABLE ALWAYS TRIGGER audit_event_append_only;
ALTER TABLE {EVENTS} ENABLE ALWAYS TRIGGER audit_event_no_truncate;
ALTER TABLE {CHECKPOINTS} ENABLE ALWAYS TRIGGER audit_checkpoint_append_only;
ALTER TABLE {CHECKPOINTS} ENABLE ALWAYS TRIGGER audit_checkpoint_no_truncate;
ALTER TABLE {HEAD} ENABLE ALWAYS TRIGGER audit_head_advance;
ALTER TABLE {HEAD} ENABLE ALWAYS TRIGGER audit_head_no_delete;
ALTER TABLE {HEAD} ENABLE ALWAYS TRIGGER audit_head_no_truncate;

INSERT INTO {HEAD} (id, seq, chain_hash) VALUES (1, 0, '{GENESIS}') ON CONFLICT (id) DO NOTHING;
"""

_SQLITE = [
    f"""CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON {EVENTS}
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: UPDATE on {EVENTS} is refused'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON {EVENTS}
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: DELETE on {EVENTS} is refused'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_checkpoint_no_update BEFORE UPDATE ON {CHECKPOINTS}
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: UPDATE on {CHECKPOINTS} is refused'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_checkpoint_no_delete BEFORE DELETE ON {CHECKPOINTS}
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: DELETE on {CHECKPOINTS} is refused'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_head_advance BEFORE UPDATE ON {HEAD}
        WHEN NEW.seq <> OLD.seq + 1 OR NOT EXISTS (
            SELECT 1 FROM {EVENTS}
            WHERE seq = NEW.seq AND prev_hash = OLD.chain_hash AND chain_hash = NEW.chain_hash)
        BEGIN SELECT RAISE(ABORT, 'the audit chain head only moves to the event appended after it'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_head_no_delete BEFORE DELETE ON {HEAD}
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: DELETE on {HEAD} is refused'); END""",
    f"INSERT OR IGNORE INTO {HEAD} (id, seq, chain_hash) VALUES (1, 0, '{GENESIS}')",
]
_SQLITE_TRIGGERS = [
    "audit_event_no_update",
    "audit_event_no_delete",
    "audit_checkpoint_no_update",
    "audit_checkpoint_no_delete",
    "audit_head_advance",
    "audit_head_no_delete",
]


def install(connection: Any) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_POSTGRES)
        elif connection.vendor == "sqlite":
            for statement in _SQLITE:
                cursor.execute(statement)
        else:
            raise NotImplementedError(f"the audit ledger supports PostgreSQL and SQLite, not {connection.vendor}")


@contextmanager
def suspended(connection: Any) -> Iterator[None]:
    """Lift the ledger's protection for the tables' owner, then restore it. For the test
    suite's database flush only: the application's runtime role cannot do this."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for table in (EVENTS, HEAD, CHECKPOINTS):
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        else:
            for name in _SQLITE_TRIGGERS:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
    try:
        yield
    finally:
        install(connection)
