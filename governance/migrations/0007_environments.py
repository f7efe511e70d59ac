"""The environments of a first install, and which of them each tier's published policy gates:
staging and production for T1-T3, production only for T4. Development is not gated."""

from django.db import migrations

ENVIRONMENTS = {
    "development": "Engineers' own trials; no approval needed",
    "staging": "Pre-production, on production-like data",
    "production": "Serving real customers and decisions",
}
GATED = {1: ["staging", "production"], 2: ["staging", "production"], 3: ["staging", "production"], 4: ["production"]}


def seed(apps, schema_editor):
    Environment = apps.get_model("governance", "Environment")
    for name, description in ENVIRONMENTS.items():
        Environment.objects.get_or_create(name=name, defaults={"description": description})
    ApprovalPolicy = apps.get_model("governance", "ApprovalPolicy")
    for policy in ApprovalPolicy.objects.all():
        if not policy.approval_required_in:
            policy.approval_required_in = GATED[policy.tier]
            policy.save(update_fields=["approval_required_in"])


class Migration(migrations.Migration):
    dependencies = [("governance", "0006_deployments")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
