"""Roles and teams are groups: who joins or leaves one is in the trail, whichever way it happens;
and so is a change to the flags that give a user powers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client

from audit.models import AuditEvent
from common.roles import Role
from tests.conftest import on_postgres
from tests.factories import UserFactory


def changes(since: int) -> list[tuple[str, str, str, str, str]]:
    return [
        (e.action, e.actor_name, e.after["user"], e.after["group"], e.after["kind"])
        for e in AuditEvent.objects.filter(pk__gt=since, action__startswith="membership.").order_by("seq")
    ]


def flag_changes(since: int) -> list[tuple[str, dict, dict]]:
    events = AuditEvent.objects.filter(pk__gt=since, action="user.flags_changed").order_by("seq")
    return [(e.actor_name, e.before, e.after) for e in events]


def created(since: int) -> list[tuple[str, dict, str]]:
    events = AuditEvent.objects.filter(pk__gt=since, action="user.created").order_by("seq")
    return [(e.actor_name, e.after, e.reason) for e in events]


def last_event() -> int:
    return AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def save_in_the_admin(root: Any, user: Any, **fields: Any) -> Any:
    """``root`` saves ``user``'s page in the admin: its name and e-mail, active and staff, and ``fields``."""
    client = Client()
    client.force_login(root)
    page = client.get(f"/admin/auth/user/{user.pk}/change/").content.decode()
    joined = re.search(r'name="date_joined_0" value="([^"]+)".*?name="date_joined_1" value="([^"]+)"', page, re.S)
    assert joined is not None
    form = {"username": user.username, "email": f"{user.username}@example.com", "is_active": "on", "is_staff": "on"}
    form |= {"date_joined_0": joined[1], "date_joined_1": joined[2], **fields}
    return client.post(f"/admin/auth/user/{user.pk}/change/", form)


def test_a_superuser_changing_someones_groups_in_the_admin_is_recorded_as_them(teams):
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    vera = UserFactory(username="vera", groups=["credit-risk"])
    validators = Group.objects.get_or_create(name=Role.VALIDATOR.value)[0]
    start = last_event()
    saved = save_in_the_admin(root, vera, groups=[str(validators.pk), str(teams["pricing"].pk)])
    assert saved.status_code == 302, saved.content[:2000]
    assert sorted(changes(start)) == [
        ("membership.added", "root", "vera", "Validators", "role"),
        ("membership.added", "root", "vera", "pricing", "team"),
        ("membership.removed", "root", "vera", "credit-risk", "team"),
    ]
    assert flag_changes(start) == [("root", {"user": "vera", "is_staff": False}, {"user": "vera", "is_staff": True})]


def test_a_user_added_in_the_admin_is_recorded_as_who_added_them_with_their_flags(teams):
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    start = last_event()
    added = client.post(
        "/admin/auth/user/add/",
        {"username": "nina", "password1": "a long enough passphrase", "password2": "a long enough passphrase"},
    )
    assert added.status_code == 302, added.content[:2000]
    nina = get_user_model().objects.get(username="nina")
    assert created(start) == [
        ("root", {"user": "nina", "is_superuser": False, "is_staff": False, "is_active": True}, "")
    ]
    assert AuditEvent.objects.get(action="user.created").object_id == str(nina.pk)


@pytest.mark.django_db(transaction=True)
def test_createsuperuser_records_the_account_as_warden_with_who_ran_it_and_where(teams, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long enough passphrase")
    call_command("createsuperuser", "--noinput", username="ada", email="ada@example.com", verbosity=0)
    [(actor, after, reason)] = created(0)
    assert (actor, after) == ("system", {"user": "ada", "is_superuser": True, "is_staff": True, "is_active": True})
    assert re.fullmatch(r"manage\.py createsuperuser, run by .+ on .+", reason)
    assert get_user_model().objects.get(username="ada").is_superuser


def permission_changes(since: int) -> list[tuple[str, str, dict]]:
    events = AuditEvent.objects.filter(pk__gt=since, action__startswith="permission.").order_by("seq")
    return [(e.action, e.actor_name, e.after) for e in events]


def test_a_model_permission_given_in_the_admin_is_recorded_as_who_gave_it(teams):
    """Warden's rules do not read Django's model permissions, but the admin's user pages do:
    "can change user" lets a staff user move anyone into a role."""
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    vera = UserFactory(username="vera", is_staff=True)
    change_user = Permission.objects.get(codename="change_user")
    start = last_event()
    saved = save_in_the_admin(root, vera, user_permissions=[str(change_user.pk)])
    assert saved.status_code == 302, saved.content[:2000]
    assert permission_changes(start) == [
        ("permission.granted", "root", {"user": "vera", "permission": "auth.change_user"})
    ]


def test_every_way_of_changing_model_permissions_through_the_orm_is_recorded(teams):
    vera = UserFactory(username="vera")
    change_user, view_user = (Permission.objects.get(codename=c) for c in ("change_user", "view_user"))
    pricing = teams["pricing"]
    start = last_event()
    with transaction.atomic():
        vera.user_permissions.add(change_user, view_user)
        change_user.user_set.remove(vera)
        pricing.permissions.set([change_user])
        view_user.group_set.add(pricing)
        pricing.permissions.clear()
        vera.user_permissions.clear()
    granted, revoked = "permission.granted", "permission.revoked"
    assert permission_changes(start) == [
        (granted, "system", {"user": "vera", "permission": "auth.change_user"}),
        (granted, "system", {"user": "vera", "permission": "auth.view_user"}),
        (revoked, "system", {"user": "vera", "permission": "auth.change_user"}),
        (granted, "system", {"group": "pricing", "permission": "auth.change_user"}),
        (granted, "system", {"group": "pricing", "permission": "auth.view_user"}),
        (revoked, "system", {"group": "pricing", "permission": "auth.change_user"}),
        (revoked, "system", {"group": "pricing", "permission": "auth.view_user"}),
        (revoked, "system", {"user": "vera", "permission": "auth.view_user"}),
    ]
    with transaction.atomic():  # deleting a holder or a permission takes it from everyone
        vera.user_permissions.add(view_user)
        pricing.permissions.add(view_user)
        start = last_event()
        view_user.delete()
    assert permission_changes(start) == [
        (revoked, "system", {"user": "vera", "permission": "auth.view_user"}),
        (revoked, "system", {"group": "pricing", "permission": "auth.view_user"}),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_user_created_outside_a_transaction_is_refused_not_left_out(teams):
    with pytest.raises(RuntimeError, match="user mallory created outside a transaction"):
        get_user_model().objects.create_user("mallory", is_superuser=True)
    assert not get_user_model().objects.filter(username="mallory").exists()
    with transaction.atomic():  # with a role, as the demo's users are made: both events commit
        get_user_model().objects.create_user("mallory").groups.add(teams["pricing"])
    assert [after["user"] for _, after, _ in created(0)] == ["mallory"]


def test_every_way_of_changing_a_membership_through_the_orm_is_recorded(teams):
    vera = UserFactory(username="vera")
    pricing, credit = teams["pricing"], teams["credit-risk"]
    start = last_event()

    with transaction.atomic():
        vera.groups.add(pricing, credit)
        vera.groups.add(pricing)  # already in it: nothing to record
    pricing.user_set.remove(vera)
    pricing.user_set.remove(vera)  # no longer in it: nothing to record
    credit.user_set.add(vera)
    vera.groups.set([pricing])
    vera.groups.clear()
    vera.groups.add(pricing)
    pricing.delete()

    assert changes(start) == [
        ("membership.added", "system", "vera", "credit-risk", "team"),
        ("membership.added", "system", "vera", "pricing", "team"),
        ("membership.removed", "system", "vera", "pricing", "team"),
        ("membership.removed", "system", "vera", "credit-risk", "team"),
        ("membership.added", "system", "vera", "pricing", "team"),
        ("membership.removed", "system", "vera", "pricing", "team"),
        ("membership.added", "system", "vera", "pricing", "team"),
        ("membership.removed", "system", "vera", "pricing", "team"),
    ]
    start = last_event()
    vera.groups.add(credit)
    vera.delete()
    assert changes(start) == [
        ("membership.added", "system", "vera", "credit-risk", "team"),
        ("membership.removed", "system", "vera", "credit-risk", "team"),
    ]


def test_flags_changed_in_a_transaction_are_recorded_and_a_sign_in_is_not(teams):
    vera = UserFactory(username="vera")
    start = last_event()
    with transaction.atomic():
        vera.is_superuser = vera.is_staff = True
        vera.save()
    vera.first_name = "Vera"
    vera.save()  # no flag changed
    vera.save(update_fields=["last_login"])
    assert flag_changes(start) == [
        (
            "system",
            {"user": "vera", "is_superuser": False, "is_staff": False},
            {"user": "vera", "is_superuser": True, "is_staff": True},
        )
    ]


def test_flags_loaded_onto_an_existing_user_by_id_are_recorded(teams):
    """``loaddata`` builds the user with its id and saves it: not a new user, but its flags."""
    from django.core import serializers

    vera = UserFactory(username="vera")
    start = last_event()
    fixture = serializers.serialize("json", [vera]).replace('"is_superuser": false', '"is_superuser": true')
    with transaction.atomic():
        for loaded in serializers.deserialize("json", fixture):
            loaded.save()
    assert flag_changes(start) == [
        ("system", {"user": "vera", "is_superuser": False}, {"user": "vera", "is_superuser": True})
    ]
    assert created(start) == []


@pytest.mark.django_db(transaction=True)
def test_a_flag_changed_outside_a_transaction_is_refused_not_left_out(teams):
    vera = UserFactory(username="vera")
    vera.is_superuser = True
    with pytest.raises(RuntimeError, match="is_superuser of vera changed outside a transaction"):
        vera.save()
    vera.refresh_from_db()
    assert vera.is_superuser is False
    assert not AuditEvent.objects.filter(action="user.flags_changed").exists()


@pytest.mark.skipif(not on_postgres(), reason="the guard is PostgreSQL's constraint triggers")
@pytest.mark.django_db(transaction=True)
def test_roles_and_flags_changed_around_warden_fail_at_commit(teams):
    """Bulk writes, ``update()`` and raw SQL skip the signals that record these changes: the
    bypass guard refuses to commit them without their events, as it does a version's state."""
    vera = UserFactory(username="vera", groups=["credit-risk"])
    officers = Group.objects.get_or_create(name=Role.RISK_OFFICER.value)[0]
    membership = vera.groups.through
    refused = pytest.raises(
        DatabaseError, match=rf"the roles and teams of auth.user {vera.pk} changed without an audit event"
    )
    with refused, transaction.atomic():
        membership.objects.bulk_create([membership(user=vera, group=officers)])
    with refused, transaction.atomic():
        membership.objects.filter(user=vera).delete()
    flags = pytest.raises(DatabaseError, match=r"the flags \(superuser, staff, active\) of auth.user \d+ changed")
    with flags, transaction.atomic():
        type(vera).objects.filter(pk=vera.pk).update(is_superuser=True)
    vera.refresh_from_db()
    assert (vera.is_superuser, sorted(vera.groups.values_list("name", flat=True))) == (False, ["credit-risk"])

    User = type(vera)
    created_around = pytest.raises(DatabaseError, match=r"the user \d+ was created without an audit event")
    with created_around, transaction.atomic():
        User.objects.bulk_create([User(username="mallory", is_superuser=True)])
    with created_around, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {User._meta.db_table} (username, password, first_name, last_name, email, is_superuser, "
            "is_staff, is_active, date_joined) VALUES ('mallory', '', '', '', '', true, true, true, now())"
        )
    with created_around, transaction.atomic():  # an event of another kind does not stand for it
        [mallory] = User.objects.bulk_create([User(username="mallory", is_superuser=True)])
        mallory.groups.add(officers)
    assert not User.objects.filter(username="mallory").exists()
    change_user = Permission.objects.get(codename="change_user")
    permissions = pytest.raises(DatabaseError, match=rf"the permissions of auth.user {vera.pk} changed without")
    with permissions, transaction.atomic():
        User.user_permissions.through.objects.bulk_create(
            [User.user_permissions.through(user=vera, permission=change_user)]
        )
    with transaction.atomic():
        vera.user_permissions.add(change_user)
    with permissions, transaction.atomic():
        User.user_permissions.through.objects.filter(user=vera).delete()
    group_permissions = pytest.raises(DatabaseError, match=r"the permissions of auth.group \d+ changed without")
    with group_permissions, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Group.permissions.through._meta.db_table} (group_id, permission_id) VALUES (%s, %s)",
            [officers.pk, change_user.pk],
        )
    assert list(vera.user_permissions.all()) == [change_user]
    assert not officers.permissions.exists()

    with transaction.atomic():  # through Warden: recorded, and committed
        vera.groups.add(officers)
        vera.is_staff = True
        vera.save()
    assert vera.groups.filter(name=Role.RISK_OFFICER.value).exists()
    assert AuditEvent.objects.filter(action="user.flags_changed", object_id=str(vera.pk)).exists()


@pytest.mark.skipif(not on_postgres(), reason="the guard is PostgreSQL's constraint triggers")
@pytest.mark.django_db(transaction=True)
def test_deleting_users_and_groups_and_renaming_a_group_through_warden_commit_with_their_events(teams):
    vera = UserFactory(username="vera", groups=["credit-risk"])
    officers = Group.objects.get_or_create(name=Role.RISK_OFFICER.value)[0]
    vera.groups.add(officers)
    ivan = UserFactory(username="ivan", groups=["credit-risk"])
    ivan.delete()  # commits: its memberships' removal is recorded first
    officers.delete()
    assert sorted(
        AuditEvent.objects.filter(action="membership.removed").values_list("after__user", "after__group")
    ) == [
        ("ivan", "credit-risk"),
        ("vera", Role.RISK_OFFICER.value),
    ]
    pricing = Group.objects.get(name="pricing")
    with transaction.atomic():
        pricing.name = Role.RISK_OFFICER.value
        pricing.save()
    renamed = AuditEvent.objects.get(action="group.renamed")
    assert (renamed.before, renamed.after) == (
        {"group": "pricing", "kind": "team"},
        {"group": Role.RISK_OFFICER.value, "kind": "role"},
    )
    refused = pytest.raises(DatabaseError, match=r"the name \(a role is a group's name\) of auth.group \d+ changed")
    with refused, transaction.atomic():
        Group.objects.filter(pk=pricing.pk).update(name="pricing")
    moved = pytest.raises(DatabaseError, match=rf"the roles and teams of auth.user {vera.pk} changed")
    with moved, transaction.atomic():
        membership = vera.groups.through
        membership.objects.filter(user=vera).update(user=UserFactory(username="walt"))
