"""The bypass guard (PostgreSQL): the registry's governed state — a model's owner, team,
restriction, risk tier, status and name, a version's state, its lineage (parents and datasets),
the aliases, and who is given a say over a model (object permissions given or moved: access to a
restricted model, a validator's assignment to a model or to a team's models) — may change only
in a transaction that also writes the matching audit event. A deferred constraint trigger checks
at commit, so ``ModelVersion.objects.filter(…).update(state=…)`` or raw SQL outside the services
fails loudly instead of passing silently.

The event matches when it was written by the same top-level transaction about the same object
(chained already, or waiting for the commit) and is of the change's kind
(``warden_audit_recorded`` in ``audit.triggers``): a version's new tags do not stand for its new
state. An alias takes any event about it (``warden_audit_written``): every event about an alias
is about where it points.
"""

from __future__ import annotations

from typing import Any

from audit.triggers import qualified

# An edge of a version's lineage, added or removed, is about the version (the child): added with
# the version, or on its own ({added}); removed, which no service does, only by {removed}.
_LINEAGE = """
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed bigint := CASE WHEN TG_OP = 'DELETE' THEN OLD.{column} ELSE NEW.{column} END;
BEGIN
    IF NOT warden_audit_recorded('registry.modelversion', changed::text, CASE WHEN TG_OP = 'INSERT'
            THEN ARRAY['version.created', '{added}'] ELSE ARRAY['{removed}'] END) THEN
        RAISE EXCEPTION 'the lineage of model version % changed (%) without an audit event: change it through the services', changed, TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
"""

# A permission given, or moved to another holder or object, is about its object: the model for
# the models' own tables (access, a validator's assignment), else the object django-guardian
# names (a team, for a validator of its models); its event is an assignment or a grant (or, for
# where it moved from, their undoing). A permission taken away is not held to this: deleting a
# user or a model takes theirs with it.
_PERMISSION = """
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NOT warden_audit_recorded({old_type}, {old_id}, ARRAY['validator.unassigned', 'model.access_revoked']) THEN
        RAISE EXCEPTION 'a permission on % % was moved without an audit event: assign validators and grant access through Warden', {old_type}, {old_id}
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NOT warden_audit_recorded({new_type}, {new_id}, ARRAY['validator.assigned', 'model.access_granted']) THEN
        RAISE EXCEPTION 'a permission on % % was given without an audit event: assign validators and grant access through Warden', {new_type}, {new_id}
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
"""
_ON_MODEL = {"old_type": "'registry.registeredmodel'", "new_type": "'registry.registeredmodel'"}
_ON_OBJECT = "(SELECT app_label || '.' || model FROM django_content_type WHERE id = {row}.content_type_id)"
_PERMISSIONS = {
    "registry_registeredmodeluserobjectpermission": "registry_model_permission_requires_audit",
    "registry_registeredmodelgroupobjectpermission": "registry_model_permission_requires_audit",
    "guardian_userobjectpermission": "registry_object_permission_requires_audit",
    "guardian_groupobjectpermission": "registry_object_permission_requires_audit",
}

# The model's own governed fields, each with the event that records its change: who owns it, the
# team that holds it and whether it is restricted (who sees it, who validates it), its risk tier
# (which approvals it needs), its status and its name.
_MODEL = """
CREATE OR REPLACE FUNCTION registry_model_requires_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    what text;
    controls text[] := array_remove(ARRAY[
        CASE WHEN OLD.owner_id IS DISTINCT FROM NEW.owner_id THEN 'owner' END,
        CASE WHEN OLD.team_id IS DISTINCT FROM NEW.team_id THEN 'team' END,
        CASE WHEN OLD.restricted IS DISTINCT FROM NEW.restricted THEN 'restricted' END], NULL);
BEGIN
    IF controls <> '{}' AND NOT warden_audit_recorded('registry.registeredmodel', NEW.id::text, ARRAY['model.updated'], controls) THEN
        what := 'owner, team or restriction';
    ELSIF OLD.risk_tier IS DISTINCT FROM NEW.risk_tier
       AND NOT warden_audit_recorded('registry.registeredmodel', NEW.id::text, ARRAY['model.risk_tier_changed']) THEN
        what := 'risk tier';
    ELSIF OLD.status IS DISTINCT FROM NEW.status
       AND NOT warden_audit_recorded('registry.registeredmodel', NEW.id::text, ARRAY['model.status_changed']) THEN
        what := 'status';
    ELSIF OLD.name IS DISTINCT FROM NEW.name
       AND NOT warden_audit_recorded('registry.registeredmodel', NEW.id::text, ARRAY['model.renamed']) THEN
        what := 'name';
    END IF;
    IF what IS NOT NULL THEN
        RAISE EXCEPTION 'the % of model % changed without an audit event: change it through the services', what, NEW.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS registry_model_audited ON registry_registeredmodel;
CREATE CONSTRAINT TRIGGER registry_model_audited
    AFTER UPDATE OF owner_id, team_id, restricted, risk_tier, status, name ON registry_registeredmodel
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN ((OLD.owner_id, OLD.team_id, OLD.restricted, OLD.risk_tier, OLD.status, OLD.name)
          IS DISTINCT FROM (NEW.owner_id, NEW.team_id, NEW.restricted, NEW.risk_tier, NEW.status, NEW.name))
    EXECUTE FUNCTION registry_model_requires_audit();
ALTER TABLE registry_registeredmodel ENABLE ALWAYS TRIGGER registry_model_audited;
"""

_GUARD = (
    """
CREATE OR REPLACE FUNCTION registry_version_requires_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT warden_audit_recorded('registry.modelversion', NEW.id::text,
                                 ARRAY[CASE WHEN TG_OP = 'INSERT' THEN 'version.created' ELSE 'version.state_changed' END]) THEN
        RAISE EXCEPTION 'model version % changed state to % without an audit event: change it through the services', NEW.id, NEW.state
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION registry_alias_requires_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    alias_model bigint := CASE WHEN TG_OP = 'DELETE' THEN OLD.model_id ELSE NEW.model_id END;
    alias_name text := CASE WHEN TG_OP = 'DELETE' THEN OLD.name ELSE NEW.name END;
BEGIN
    IF NOT warden_audit_written(
        'registry.alias', (SELECT name FROM registry_registeredmodel WHERE id = alias_model) || '@' || alias_name
    ) THEN
        RAISE EXCEPTION 'alias % of model % changed (%) without an audit event: change it through the services', alias_name, alias_model, TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
{lineage}
DROP TRIGGER IF EXISTS registry_version_created_audited ON registry_modelversion;
CREATE CONSTRAINT TRIGGER registry_version_created_audited AFTER INSERT ON registry_modelversion
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION registry_version_requires_audit();
DROP TRIGGER IF EXISTS registry_version_state_audited ON registry_modelversion;
CREATE CONSTRAINT TRIGGER registry_version_state_audited AFTER UPDATE OF state ON registry_modelversion
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION registry_version_requires_audit();
DROP TRIGGER IF EXISTS registry_alias_audited ON registry_alias;
CREATE CONSTRAINT TRIGGER registry_alias_audited AFTER INSERT OR UPDATE OR DELETE ON registry_alias
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION registry_alias_requires_audit();

DROP TRIGGER IF EXISTS registry_parent_audited ON registry_versionparent;
CREATE CONSTRAINT TRIGGER registry_parent_audited AFTER INSERT OR UPDATE OR DELETE ON registry_versionparent
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION registry_parent_requires_audit();
DROP TRIGGER IF EXISTS registry_dataset_usage_audited ON registry_datasetusage;
CREATE CONSTRAINT TRIGGER registry_dataset_usage_audited AFTER INSERT OR UPDATE OR DELETE ON registry_datasetusage
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION registry_usage_requires_audit();

ALTER TABLE registry_versionparent ENABLE ALWAYS TRIGGER registry_parent_audited;
ALTER TABLE registry_datasetusage ENABLE ALWAYS TRIGGER registry_dataset_usage_audited;
ALTER TABLE registry_modelversion ENABLE ALWAYS TRIGGER registry_version_created_audited;
ALTER TABLE registry_modelversion ENABLE ALWAYS TRIGGER registry_version_state_audited;
ALTER TABLE registry_alias ENABLE ALWAYS TRIGGER registry_alias_audited;
""".replace(
        "{lineage}",
        _LINEAGE.format(
            function="registry_parent_requires_audit",
            column="child_id",
            added="lineage.parent_added",
            removed="lineage.parent_removed",
        )
        + _LINEAGE.format(
            function="registry_usage_requires_audit",
            column="version_id",
            added="lineage.dataset_added",
            removed="lineage.dataset_removed",
        ),
    )
    + _MODEL
    + _PERMISSION.format(
        function="registry_model_permission_requires_audit",
        **_ON_MODEL,
        old_id="OLD.content_object_id::text",
        new_id="NEW.content_object_id::text",
    )
    + _PERMISSION.format(
        function="registry_object_permission_requires_audit",
        old_type=_ON_OBJECT.format(row="OLD"),
        new_type=_ON_OBJECT.format(row="NEW"),
        old_id="OLD.object_pk",
        new_id="NEW.object_pk",
    )
)
_PERMISSION_TRIGGER = """
DROP TRIGGER IF EXISTS registry_permission_audited ON {table};
CREATE CONSTRAINT TRIGGER registry_permission_audited AFTER INSERT OR UPDATE ON {table}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {function}();
ALTER TABLE {table} ENABLE ALWAYS TRIGGER registry_permission_audited;
"""


def install(connection: Any) -> None:
    """Idempotent; PostgreSQL only (SQLite, the embedded mode, has no roles to guard against).
    Guards the permission tables that exist (migrations call this as they arrive)."""
    if connection.vendor == "postgresql":
        tables = set(connection.introspection.table_names())
        with connection.cursor() as cursor:
            cursor.execute(qualified(_GUARD, cursor, ("registry_registeredmodel", "django_content_type")))
            for table in sorted(tables & set(_PERMISSIONS)):
                cursor.execute(_PERMISSION_TRIGGER.format(table=table, function=_PERMISSIONS[table]))
