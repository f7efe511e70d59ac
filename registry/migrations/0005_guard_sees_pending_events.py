from django.db import migrations


def install(apps, schema_editor):
    from registry import guards

    guards.install(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("registry", "0004_validate_permission"), ("audit", "0003_append_at_commit")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
