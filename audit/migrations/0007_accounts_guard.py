from django.conf import settings
from django.db import migrations


def install(apps, schema_editor):
    from audit import accounts

    accounts.install(schema_editor.connection)


class Migration(migrations.Migration):
    """PostgreSQL: roles, teams and the flags that give powers change only with their event."""

    dependencies = [
        ("audit", "0006_documents_as_canonical_text"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
