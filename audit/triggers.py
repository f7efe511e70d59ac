"""The database's own refusal to change the ledger, and the append itself on PostgreSQL.

Installed by migrations (``install`` is idempotent: a later migration that rebuilds an audit
table on SQLite calls it again). PostgreSQL triggers are ``ENABLE ALWAYS`` so that
``SET session_replication_role = replica`` does not skip them; only the tables' owner can
disable them, which is why the application runs as a role that owns nothing
(``manage.py audit_grants``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from audit.ledger import GENESIS, sql_time
from audit.models import EVENT_FIELDS

EVENTS = "audit_auditevent"
HEAD = "audit_chainhead"
CHECKPOINTS = "audit_checkpoint"
PENDING = "audit_pending"
# What the writer gives an event: every field but those the chain head gives, in the order of
# ``EVENT_FIELDS`` (``warden_audit_chain``'s, after ``early`` and the canonical text's pieces).
GIVEN = tuple(
    name for name in EVENT_FIELDS if name not in ("seq", "occurred_at", "entry_hash", "prev_hash", "chain_hash")
)

# The append (PostgreSQL). ``warden_audit_chain`` locks the chain head, then reads the clock,
# finishes the canonical text with that time and the next sequence number
# (``ledger.canonical_template`` made the pieces around them), hashes it as ``ledger`` does,
# inserts the event and advances the head. Writers call it at commit: ``audit_record`` inserts
# the event into ``audit_pending``, and a deferred constraint trigger chains each pending row when
# its transaction commits, after every other statement, so the head is locked only for the
# function's own work and never while a client computes or a round trip is on the wire. (Called
# directly, it chains at once, for a caller that needs the event's place now.) ``early`` turns off
# this transaction's wait for the WAL flush (``audit.services._release_early``). The pending table
# is unlogged: its rows live only until their transaction ends. The function runs with its
# owner's rights (``SECURITY DEFINER``, its search path fixed and its tables named by schema), so
# that the application's runtime role appends through it alone: it may not insert an event or
# move the head itself (``audit.privileges``), which would let it choose an event's time.
_APPEND = f"""
CREATE UNLOGGED TABLE IF NOT EXISTS {PENDING} (
    txid bigint NOT NULL DEFAULT txid_current(),
    early boolean NOT NULL,
    text_a text NOT NULL,
    text_b text NOT NULL,
    text_c text NOT NULL,
    actor_id integer,
    actor_name varchar(150) NOT NULL,
    action varchar(64) NOT NULL,
    object_type varchar(64) NOT NULL,
    object_id varchar(64) NOT NULL,
    model_name varchar(100) NOT NULL,
    before json,
    after json,
    reason text NOT NULL,
    request_id varchar(64) NOT NULL,
    source_ip inet
);
CREATE INDEX IF NOT EXISTS audit_pending_about ON {PENDING} (txid, object_type, object_id);
-- Every row is deleted by the commit that chains it: have autovacuum (where it runs, as it does
-- by default) clear the dead ones as soon as a few thousand have gathered.
ALTER TABLE {PENDING} SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000);

CREATE OR REPLACE FUNCTION warden_audit_chain(
    early boolean, text_a text, text_b text, text_c text,
    {", ".join(f"p_{name} {EVENTS}.{name}%TYPE" for name in GIVEN)}
) RETURNS {EVENTS} LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    head record;
    moment timestamptz;
    hashed_text text;
    entry text;
    appended {EVENTS};
BEGIN
    IF early THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    SELECT seq, chain_hash, occurred_at INTO head FROM {HEAD} WHERE id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the audit chain head is missing: run migrate';
    END IF;
    moment := GREATEST(clock_timestamp(), head.occurred_at);
    hashed_text := text_a || {sql_time("moment")} || text_b || (head.seq + 1)::text || text_c;
    entry := encode(sha256(convert_to(hashed_text, 'UTF8')), 'hex');
    INSERT INTO {EVENTS} ({", ".join(GIVEN)},
                          seq, occurred_at, canonical, entry_hash, prev_hash, chain_hash)
    VALUES ({", ".join(f"p_{name}" for name in GIVEN)},
            head.seq + 1, moment, hashed_text, entry, head.chain_hash,
            encode(sha256(decode(head.chain_hash, 'hex') || decode(entry, 'hex')), 'hex'))
    RETURNING * INTO appended;
    UPDATE {HEAD} SET seq = appended.seq, chain_hash = appended.chain_hash, occurred_at = appended.occurred_at
    WHERE id = 1;
    RETURN appended;
END $$;

-- The pending row goes first, outside the head's lock: the guards that look for it
-- (``warden_audit_written``) find this event in the trail from here on. Only this event's row (or
-- one the same in every piece of its text): another event about the same object, not chained
-- yet, is still there for the guards that ask for its kind (``warden_audit_recorded``).
CREATE OR REPLACE FUNCTION warden_audit_chain_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {PENDING} WHERE txid = NEW.txid AND object_type = NEW.object_type AND object_id = NEW.object_id
        AND action = NEW.action AND text_a = NEW.text_a AND text_b = NEW.text_b AND text_c = NEW.text_c;
    PERFORM warden_audit_chain(NEW.early, NEW.text_a, NEW.text_b, NEW.text_c,
                               {", ".join(f"NEW.{name}" for name in GIVEN)});
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS audit_pending_chain ON {PENDING};
CREATE CONSTRAINT TRIGGER audit_pending_chain AFTER INSERT ON {PENDING}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION warden_audit_chain_pending();
ALTER TABLE {PENDING} ENABLE ALWAYS TRIGGER audit_pending_chain;

-- For the bypass guards: has this transaction recorded an event about this object (waiting for
-- the commit to chain it, the usual case when a guard runs, or chained already)? In PL/pgSQL,
-- whose statements keep their plans for the session: a SQL function that is not inlined (this
-- one, with its subqueries) is planned again on every call, 0.24 ms against 0.02.
CREATE OR REPLACE FUNCTION warden_audit_written(about_type text, about_id text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM {PENDING} WHERE txid = txid_current() AND object_type = about_type AND object_id = about_id)
        OR EXISTS (SELECT 1 FROM {EVENTS} WHERE txid = txid_current() AND object_type = about_type AND object_id = about_id);
END $$;

-- The same for an event of one of ``actions`` (and, given ``keys``, whose document after the
-- change names every one of them): for the guards whose change has an event of its own kind
-- (any event about a user does not stand for that user's creation, nor a model's new
-- description for its new team).
CREATE OR REPLACE FUNCTION warden_audit_recorded(about_type text, about_id text, actions text[], keys text[] DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM {PENDING} WHERE txid = txid_current() AND object_type = about_type
                   AND object_id = about_id AND action = ANY(actions)
                   AND (keys IS NULL OR json_typeof(after) = 'object' AND after::jsonb ?& keys))
        OR EXISTS (SELECT 1 FROM {EVENTS} WHERE txid = txid_current() AND object_type = about_type
                   AND object_id = about_id AND action = ANY(actions)
                   AND (keys IS NULL OR json_typeof(after) = 'object' AND after::jsonb ?& keys));
END $$;
"""

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
-- The guards find this transaction's events through the object's index (few events each).
DROP INDEX IF EXISTS audit_event_txid;

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
{_APPEND}"""

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


def qualified(sql: str, cursor: Any, tables: Iterable[str]) -> str:
    """``sql`` with each of ``tables`` named by its schema (PostgreSQL). A session's temporary
    tables come first in its search path: a function that names a table bare would read or write
    a temporary one a session made with the same name, so that its appends, and the guards'
    look for them, would go to a table of its own instead of the trail."""
    cursor.execute("SELECT current_schema()")
    schema = '"' + cursor.fetchone()[0].replace('"', '""') + '"'
    names = "|".join(re.escape(table) for table in tables)
    return re.sub(rf"(?<![\w.\"])({names})(?![\w\"])", rf"{schema}.\1", sql)


def install(connection: Any) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(qualified(_POSTGRES, cursor, (EVENTS, HEAD, CHECKPOINTS, PENDING)))
        elif connection.vendor == "sqlite":
            for statement in _SQLITE:
                cursor.execute(statement)
        else:
            raise NotImplementedError(f"the audit ledger supports PostgreSQL and SQLite, not {connection.vendor}")


def lift(connection: Any) -> None:
    """Switch the protection off until ``install`` puts it back: for the test suite's flush, and
    for a migration that rebuilds an audit table on SQLite (whose triggers name the tables)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for table in (EVENTS, HEAD, CHECKPOINTS):
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        else:
            for name in _SQLITE_TRIGGERS:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")


@contextmanager
def suspended(connection: Any) -> Iterator[None]:
    """Lift the ledger's protection for the tables' owner, then restore it. For the test
    suite's database flush only: the application's runtime role cannot do this."""
    lift(connection)
    try:
        yield
    finally:
        install(connection)
