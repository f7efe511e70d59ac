from django.db import migrations


def install(apps, schema_editor):
    from audit import triggers

    triggers.install(schema_editor.connection)


class Migration(migrations.Migration):
    """PostgreSQL: events are chained at commit (the pending table, ``warden_audit_chain`` and its
    deferred trigger), and the guards' ``warden_audit_written``."""

    dependencies = [("audit", "0002_ledger_protection")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
