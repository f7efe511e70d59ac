from django.conf import settings
from django.db import migrations


def install(apps, schema_editor):
    from audit import accounts

    accounts.install(schema_editor.connection)


def uninstall(apps, schema_editor):
    from audit import accounts

    accounts.uninstall(schema_editor.connection)


class Migration(migrations.Migration):
    """PostgreSQL: roles, teams, group names and the flags that give powers change only with their event."""

    dependencies = [
        ("audit", "0006_documents_as_canonical_text"),
        ("auth", "0012_alter_user_first_name_max_length"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(install, uninstall)]
