from django.db import migrations, models

CHECK_KINDS = ("revalidation", "tier_change", "decommission")


def opened_as_check(apps, schema_editor):
    """Requests opened before the flag: judged by their opener's roles now, the rule until then."""
    ApprovalRequest = apps.get_model("governance", "ApprovalRequest")
    checks = ApprovalRequest.objects.filter(kind__in=CHECK_KINDS).filter(
        models.Q(submitted_by__username="warden") | models.Q(submitted_by__groups__name="Risk officers")
    )
    ApprovalRequest.objects.filter(pk__in=checks.values("pk")).update(opened_as_check=True)


def guard(apps, schema_editor):
    from governance import guards

    guards.install(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0011_condition_overdue"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.AddField(
            model_name="approvalrequest",
            name="opened_as_check",
            field=models.BooleanField(
                default=False,
                help_text="A check on the model's people, opened by Warden or a risk officer (policies.opens_check).",
            ),
        ),
        migrations.RunPython(opened_as_check, migrations.RunPython.noop),
        migrations.RunPython(guard, migrations.RunPython.noop),
    ]
