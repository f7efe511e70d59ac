"""The environments of a first install. Which of them each tier's approval gates is in the
policies (``approval_required_in``, seeded by 0002)."""

from django.db import migrations

ENVIRONMENTS = {
    "development": "Engineers' own trials; no approval needed",
    "staging": "Pre-production, on production-like data",
    "production": "Serving real customers and decisions",
}


def seed(apps, schema_editor):
    Environment = apps.get_model("governance", "Environment")
    for name, description in ENVIRONMENTS.items():
        Environment.objects.get_or_create(name=name, defaults={"description": description})


class Migration(migrations.Migration):
    dependencies = [("governance", "0006_deployments")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
