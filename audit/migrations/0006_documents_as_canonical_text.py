from django.db import migrations

import audit.models

# Each stored document becomes the text the event's canonical text holds for it, when the column
# says what the canonical text says (compared as jsonb). A column that differs keeps its own
# value, so what audit_verify reported before this migration it still reports after it. A
# canonical text that is not JSON leaves its row's columns as they are, for the same reason.
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


def to_json_columns(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite keeps documents as text already
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(_DOCUMENT)
        # Its arguments' types change with the columns: dropped, and made again by install().
        cursor.execute("DROP FUNCTION IF EXISTS warden_audit_chain")
        cursor.execute("ALTER TABLE audit_pending ALTER COLUMN before TYPE json, ALTER COLUMN after TYPE json")
        cursor.execute(
            "ALTER TABLE audit_auditevent"
            " ALTER COLUMN before TYPE json USING pg_temp.warden_document(canonical, 'before', before),"
            " ALTER COLUMN after TYPE json USING pg_temp.warden_document(canonical, 'after', after)"
        )
        cursor.execute("DROP FUNCTION pg_temp.warden_document")
    from audit import triggers

    triggers.install(schema_editor.connection)


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
            database_operations=[migrations.RunPython(to_json_columns, migrations.RunPython.noop)],
        )
    ]
