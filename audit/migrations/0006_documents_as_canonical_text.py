from django.db import migrations

import audit.models

# Each stored document becomes the text the event's canonical text holds for it, when the column
# says what the canonical text says (compared as jsonb). A column that differs keeps its own
# value, so a column edited behind the hashes' back is still named by audit_verify afterwards; a
# canonical text that is not JSON leaves its row's columns as they are, for the same reason. (A
# number from 1e21 up, which a jsonb column read back as an integer and audit_verify flagged, now
# verifies.)
#
# It rewrites the trail's table and holds the pending table, on which every audited write waits,
# for the time it takes (about 20 s for a million events on two cores): stop the web and worker
# processes, migrate, then start them on the new code, so that no connection prepared the old
# statements and no old process writes documents in the old form.
_DOCUMENT = """
CREATE FUNCTION pg_temp.warden_document(canonical text, name text, stored jsonb) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    hashed json;
BEGIN
    hashed := canonical::json -> name;
    IF hashed::jsonb IS NOT DISTINCT FROM coalesce(stored, 'null'::jsonb) THEN
        RETURN CASE WHEN stored IS NULL THEN NULL ELSE hashed END;
    END IF;
    RETURN stored::json;
EXCEPTION WHEN data_exception THEN  -- not JSON, or JSON that jsonb refuses (an escaped NUL)
    RETURN stored::json;
END $$
"""


def _retype(schema_editor, *alters: str) -> None:
    """Alter the document columns; the append function, whose arguments take their types, is
    dropped first and made again by install()."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("DROP FUNCTION IF EXISTS warden_audit_chain")
        for alter in alters:
            cursor.execute(alter)
    from audit import triggers

    triggers.install(schema_editor.connection)


def to_json_columns(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite keeps documents as text already
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(_DOCUMENT)
    _retype(
        schema_editor,
        "ALTER TABLE audit_pending ALTER COLUMN before TYPE json, ALTER COLUMN after TYPE json",
        "ALTER TABLE audit_auditevent"
        " ALTER COLUMN before TYPE json USING pg_temp.warden_document(canonical, 'before', before),"
        " ALTER COLUMN after TYPE json USING pg_temp.warden_document(canonical, 'after', after)",
        "DROP FUNCTION pg_temp.warden_document",
    )


def to_jsonb_columns(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    _retype(
        schema_editor,
        "ALTER TABLE audit_pending ALTER COLUMN before TYPE jsonb, ALTER COLUMN after TYPE jsonb",
        "ALTER TABLE audit_auditevent ALTER COLUMN before TYPE jsonb USING before::jsonb,"
        " ALTER COLUMN after TYPE jsonb USING after::jsonb",
    )


class Migration(migrations.Migration):
    """Before and after documents stored as their canonical text (``audit.models.Document``)."""

    dependencies = [("audit", "0005_guard_check_in_plpgsql")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent", name=name, field=audit.models.Document(editable=False, null=True)
                )
                for name in ("before", "after")
            ],
            database_operations=[migrations.RunPython(to_json_columns, to_jsonb_columns)],
        )
    ]
