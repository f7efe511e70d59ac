from django.db import migrations


def install(apps, schema_editor):
    from registry import guards

    guards.install(schema_editor.connection)


class Migration(migrations.Migration):
    """PostgreSQL: access to a model and a validator's assignment are given, and a model's owner, team,
    restriction, risk tier, status and name change, only with their event."""

    dependencies = [
        ("registry", "0008_lineage_guard"),
        ("audit", "0009_new_users_and_permissions_guard"),
        ("guardian", "0003_remove_groupobjectpermission_guardian_gr_content_ae6aec_idx_and_more"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
