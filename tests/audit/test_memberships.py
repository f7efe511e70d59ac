"""Roles and teams are groups: who joins or leaves one is in the trail, whichever way it happens."""

from __future__ import annotations

import re

from django.contrib.auth.models import Group
from django.db import transaction
from django.test import Client

from audit.models import AuditEvent
from common.roles import Role
from tests.factories import UserFactory


def changes(since: int) -> list[tuple[str, str, str, str, str]]:
    return [
        (e.action, e.actor_name, e.after["user"], e.after["group"], e.after["kind"])
        for e in AuditEvent.objects.filter(pk__gt=since, object_type="auth.user").order_by("seq")
    ]


def last_event() -> int:
    return AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def test_a_superuser_changing_someones_groups_in_the_admin_is_recorded_as_them(teams):
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    vera = UserFactory(username="vera", groups=["credit-risk"])
    validators = Group.objects.get_or_create(name=Role.VALIDATOR.value)[0]
    client = Client()
    client.force_login(root)
    page = client.get(f"/admin/auth/user/{vera.pk}/change/").content.decode()
    joined = re.search(r'name="date_joined_0" value="([^"]+)".*?name="date_joined_1" value="([^"]+)"', page, re.S)
    assert joined is not None
    start = last_event()

    saved = client.post(
        f"/admin/auth/user/{vera.pk}/change/",
        {
            "username": "vera",
            "email": "vera@example.com",
            "is_active": "on",
            "groups": [str(validators.pk), str(teams["pricing"].pk)],
            "date_joined_0": joined[1],
            "date_joined_1": joined[2],
        },
    )

    assert saved.status_code == 302, saved.content[:2000]
    assert sorted(changes(start)) == [
        ("membership.added", "root", "vera", "Validators", "role"),
        ("membership.added", "root", "vera", "pricing", "team"),
        ("membership.removed", "root", "vera", "credit-risk", "team"),
    ]


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
