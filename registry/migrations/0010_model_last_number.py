from django.db import migrations, models

# Versions are never deleted: a model's newest number is its highest. Written in SQL that both
# databases take (no alias on the updated table).
COUNT = """
UPDATE registry_registeredmodel SET last_number = COALESCE(
    (SELECT MAX(v.number) FROM registry_modelversion v WHERE v.model_id = registry_registeredmodel.id), 0)
"""


class Migration(migrations.Migration):
    """A model counts its versions, so that a new version's number is read with the model's lock
    rather than by a statement of its own."""

    dependencies = [("registry", "0009_permission_guard")]

    operations = [
        migrations.AddField(
            model_name="registeredmodel",
            name="last_number",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.RunSQL(COUNT, migrations.RunSQL.noop),
    ]
