"""The bypass guard for governance (PostgreSQL), as ``registry.guards`` is for the registry: a
decision, a new approval request or a request's change of state (or of whether it is a check)
commits only with its audit event, written by the same transaction about the same row and of the
change's own kind; so does a deployment recorded or retired. ``Decision.objects.create`` or an
``UPDATE governance_approvalrequest SET state = 'approved'`` outside the services fails at
commit, and so does a request moved to ``rejected`` in a transaction that recorded its approval:
the event names the state it records (``approval_request.<state>``)."""

from __future__ import annotations

from typing import Any

_FUNCTION = """
CREATE OR REPLACE FUNCTION governance_requires_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    action text := TG_ARGV[1];
BEGIN
    IF action LIKE '%.{state}' THEN  -- only the triggers on a table with a state say so
        action := replace(action, '{state}', NEW.state);
    END IF;
    IF NOT warden_audit_recorded(TG_ARGV[0], NEW.id::text, ARRAY[action]) THEN
        RAISE EXCEPTION '% % was written (%) without an audit event (%): change it through the services', TG_ARGV[0], NEW.id, TG_OP, action
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
"""
# table → (trigger, when it fires, the audit event's object type, and its action: ``{state}``
# stands for the row's new state)
_TRIGGERS = {
    "governance_decision": [  # a decision, once recorded, is never changed
        ("governance_decision_audited", "AFTER INSERT OR UPDATE", "", "governance.decision", "decision.recorded"),
    ],
    "governance_approvalrequest": [
        (
            "governance_request_created_audited",
            "AFTER INSERT",
            "",
            "governance.approvalrequest",
            "approval_request.submitted",
        ),
        (
            "governance_request_state_audited",
            "AFTER UPDATE OF state",
            "WHEN (OLD.state IS DISTINCT FROM NEW.state)",
            "governance.approvalrequest",
            "approval_request.{state}",
        ),
        # Whether it is a check on the model's people decides who may withdraw it: set when the
        # request is opened, and never after.
        (
            "governance_request_check_audited",
            "AFTER UPDATE OF opened_as_check",
            "WHEN (OLD.opened_as_check IS DISTINCT FROM NEW.opened_as_check)",
            "governance.approvalrequest",
            "approval_request.submitted",
        ),
    ],
    "governance_deployment": [
        ("governance_deployment_audited", "AFTER INSERT", "", "governance.deployment", "deployment.recorded"),
        ("governance_deployment_retired_audited", "AFTER UPDATE", "", "governance.deployment", "deployment.retired"),
    ],
}


def install(connection: Any) -> None:
    """Idempotent; PostgreSQL only. Guards the tables that exist (migrations call this as the
    tables arrive)."""
    if connection.vendor != "postgresql":
        return
    tables = set(connection.introspection.table_names())
    with connection.cursor() as cursor:
        cursor.execute(_FUNCTION)
        for table in sorted(tables & set(_TRIGGERS)):
            columns = {c.name for c in connection.introspection.get_table_description(cursor, table)}
            for name, fires, when, object_type, action in _TRIGGERS[table]:
                if fires.startswith("AFTER UPDATE OF ") and fires.removeprefix("AFTER UPDATE OF ") not in columns:
                    continue  # a column a later migration adds, and installs this again
                cursor.execute(
                    f"DROP TRIGGER IF EXISTS {name} ON {table};"
                    f"CREATE CONSTRAINT TRIGGER {name} {fires} ON {table} DEFERRABLE INITIALLY DEFERRED "
                    f"FOR EACH ROW {when} EXECUTE FUNCTION governance_requires_audit('{object_type}', '{action}');"
                    f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name};"
                )
