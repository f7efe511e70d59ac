from django.db import migrations

# Frozen copy of common.roles.Role at the time of this migration: migrations must not
# change meaning when the code moves on.
ROLES = [
    "Model developers",
    "Model owners",
    "Validators",
    "Risk officers",
    "Committee members",
    "Deployers",
    "Auditors",
]


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES, user__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("registry", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_roles, remove_roles)]
