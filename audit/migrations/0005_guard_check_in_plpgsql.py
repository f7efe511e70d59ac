from django.db import migrations


def install(apps, schema_editor):
    from audit import triggers

    triggers.install(schema_editor.connection)


class Migration(migrations.Migration):
    """PostgreSQL: the guards' ``warden_audit_written`` in PL/pgSQL, which keeps its plans."""

    dependencies = [("audit", "0004_lean_indexes")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
