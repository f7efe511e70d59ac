from django.db import migrations


def install(apps, schema_editor):
    """The guards ask for the event of the change's own kind (``governance.guards``)."""
    from governance import guards

    guards.install(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("governance", "0012_request_opened_as_check"), ("audit", "0009_new_users_and_permissions_guard")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
