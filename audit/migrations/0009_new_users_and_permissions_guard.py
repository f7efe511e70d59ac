from django.conf import settings
from django.db import migrations


def install(apps, schema_editor):
    from audit import accounts, triggers

    triggers.install(schema_editor.connection)  # warden_audit_recorded, which the guards call
    accounts.install(schema_editor.connection)


class Migration(migrations.Migration):
    """PostgreSQL: a user is created, and a model permission given or taken, only with its event;
    each account guard asks for an event of its own kind."""

    dependencies = [
        ("audit", "0008_qualified_names"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
