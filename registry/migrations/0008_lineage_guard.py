from django.db import migrations


def install(apps, schema_editor):
    from registry import guards

    guards.install(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("registry", "0007_token_created_via")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
