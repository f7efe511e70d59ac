from django.conf import settings
from django.db import migrations


def install(apps, schema_editor):
    from audit import accounts

    accounts.install(schema_editor.connection)


class Migration(migrations.Migration):
    """PostgreSQL: a user is created only with its event (``user.created``)."""

    dependencies = [
        ("audit", "0008_qualified_names"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
