from django.db import migrations


def install(apps, schema_editor):
    from governance import guards

    guards.install(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("governance", "0009_finding_history"), ("audit", "0003_append_at_commit")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
