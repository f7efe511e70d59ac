"""The bypass guard for governance (PostgreSQL), as ``registry.guards`` is for the registry: a
decision, a new approval request or a request's change of state commits only with its audit
event, written by the same transaction about the same row; so does a deployment recorded or
retired. ``Decision.objects.create`` or an
``UPDATE governance_approvalrequest SET state = 'approved'`` outside the services fails at
commit."""

from __future__ import annotations

from typing import Any

_GUARD = """
CREATE OR REPLACE FUNCTION governance_requires_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM audit_auditevent
        WHERE txid = txid_current() AND object_type = TG_ARGV[0] AND object_id = NEW.id::text
    ) THEN
        RAISE EXCEPTION '% % was written (%) without an audit event: change it through the services', TG_ARGV[0], NEW.id, TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS governance_decision_audited ON governance_decision;
CREATE CONSTRAINT TRIGGER governance_decision_audited AFTER INSERT OR UPDATE ON governance_decision
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION governance_requires_audit('governance.decision');
DROP TRIGGER IF EXISTS governance_request_created_audited ON governance_approvalrequest;
CREATE CONSTRAINT TRIGGER governance_request_created_audited AFTER INSERT ON governance_approvalrequest
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION governance_requires_audit('governance.approvalrequest');
DROP TRIGGER IF EXISTS governance_request_state_audited ON governance_approvalrequest;
CREATE CONSTRAINT TRIGGER governance_request_state_audited AFTER UPDATE OF state ON governance_approvalrequest
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION governance_requires_audit('governance.approvalrequest');
DROP TRIGGER IF EXISTS governance_deployment_audited ON governance_deployment;
CREATE CONSTRAINT TRIGGER governance_deployment_audited AFTER INSERT OR UPDATE ON governance_deployment
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION governance_requires_audit('governance.deployment');

ALTER TABLE governance_decision ENABLE ALWAYS TRIGGER governance_decision_audited;
ALTER TABLE governance_deployment ENABLE ALWAYS TRIGGER governance_deployment_audited;
ALTER TABLE governance_approvalrequest ENABLE ALWAYS TRIGGER governance_request_created_audited;
ALTER TABLE governance_approvalrequest ENABLE ALWAYS TRIGGER governance_request_state_audited;
"""


def install(connection: Any) -> None:
    """Idempotent; PostgreSQL only."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_GUARD)
