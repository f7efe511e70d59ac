from django.db import migrations


def install(apps, schema_editor):
    from audit import triggers
    from registry import guards

    triggers.install(schema_editor.connection)
    guards.install(schema_editor.connection)


class Migration(migrations.Migration):
    """PostgreSQL: the ledger's and the guards' functions name their tables by schema, so that a
    session's temporary table of the same name cannot stand in for one."""

    dependencies = [("audit", "0007_accounts_guard"), ("registry", "0008_lineage_guard")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
