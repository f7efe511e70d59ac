from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from common.rows import JoinedRow
from registry import services
from registry.models import ApiToken, DatasetUsage, ModelVersion, VersionParent
from tests.factories import make_model, make_version

TOKENS = JoinedRow(ApiToken, ("user",), ("key_hash",))


def _fields(instance: object) -> dict[str, object]:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}  # type: ignore[attr-defined]


def test_a_joined_row_is_the_instance_the_orm_gives_with_its_related_row(developer):
    expires = timezone.now() + timedelta(days=3)
    token, secret = services.token_create(actor=developer, name="ci", expires_at=expires)
    developer.last_login = timezone.now()
    developer.save(update_fields=["last_login"])

    got = TOKENS.get(services.hash_token(secret))
    orm = ApiToken.objects.select_related("user").get(pk=token.pk)

    assert _fields(got) == _fields(orm)
    assert _fields(got.user) == _fields(orm.user)
    assert got.expires_at == expires and got.expires_at.tzinfo is not None  # converted, on SQLite too
    assert got.user.is_active is True and got.user.username == developer.username
    assert not got._state.adding and not got.user._state.adding


def test_no_row_is_none(db):
    assert TOKENS.get("0" * 64) is None


def test_keys_may_name_a_related_row_and_flags_say_whether_rows_point_here(developer):
    versions = JoinedRow(
        ModelVersion,
        ("model", "created_by"),
        ("model__name", "number"),
        flags={"has_parents": (VersionParent, "child"), "has_datasets": (DatasetUsage, "version")},
    )
    model = make_model(developer, name="m1")
    first = make_version(developer, model)
    second = make_version(developer, model, parents=[(first, "retrained_from")])

    got = versions.get("m1", 2)
    orm = ModelVersion.objects.select_related("model", "created_by").get(pk=second.pk)
    assert _fields(got) == _fields(orm) and _fields(got.model) == _fields(orm.model)
    assert (got.has_parents, got.has_datasets) == (True, False)
    assert versions.get("m1", 1).has_parents is False
    assert versions.get("m1", 3) is None and versions.get("m2", 1) is None
