from django.db import migrations


def install(apps, schema_editor):
    from governance import guards

    guards.install(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("governance", "0003_request_valid_until_and_queue"), ("audit", "0002_ledger_protection")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
