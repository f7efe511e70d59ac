from __future__ import annotations

from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from audit.services import audit_record
from common.rows import Insert, JoinedRow, NumberedInsert, Update, columns, rows
from notifications.models import Message, Webhook
from registry import services
from registry.models import Alias, ApiToken, DatasetUsage, ModelVersion, VersionParent
from tests.conftest import on_postgres
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


def test_a_numbered_insert_stores_the_row_the_orm_would_and_counts_it_on_its_parent(developer):
    model, other = make_model(developer, name="m1"), make_model(developer, name="m2")
    make_version(developer, model)
    make_version(developer, model)
    inserts = NumberedInsert(
        ModelVersion, "number", within="model", count="last_number", touch=("updated_at", "created_at")
    )
    version = ModelVersion(
        model=model, number=3, artifact_uri="s3://b/3", tags={"k": "v"}, metrics={"auc": 0.9}, created_by=developer
    )
    # With its key taken first (as the registry does on PostgreSQL, where the insert then travels
    # with the next statement), or given by the insert.
    keyed = ModelVersion(model=other, number=1, artifact_uri="s3://b/1", created_by=developer)
    if on_postgres():
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence('registry_modelversion', 'id'))")
            keyed.pk = cursor.fetchone()[0]
    for new in (version, keyed):
        with transaction.atomic():  # with its audit event, as the bypass guard requires
            inserts.save(new)
            audit_record(actor=developer, action="version.created", obj=new)

    assert not version._state.adding and version.created_at is not None and keyed.pk is not None
    for new in (version, keyed):
        assert _fields(new) == _fields(ModelVersion.objects.get(pk=new.pk))
        new.model.refresh_from_db()
        assert (new.model.last_number, new.model.updated_at) == (new.number, new.created_at)


def test_an_insert_stores_the_row_the_orm_would_and_sets_its_key(db):
    message = Message(event="alias.moved", subject="m@candidate now points to version 2", payload={"n": [1, "ü"]})
    with transaction.atomic():
        Insert(Message).save(message)

    assert message.pk is not None and not message._state.adding
    assert message.created_at is not None  # auto_now_add applied
    assert _fields(message) == _fields(Message.objects.get(pk=message.pk))


def test_an_update_writes_only_its_fields_and_applies_auto_now(developer):
    model = make_model(developer, name="m1")
    first, second = make_version(developer, model), make_version(developer, model)
    alias = services.alias_set(actor=developer, model=model, name="candidate", number=first.number)
    stored = Alias.objects.get(pk=alias.pk)
    alias.version, alias.name = second, "renamed-in-memory-only"
    with transaction.atomic():  # with its audit event, as the bypass guard requires
        Update(Alias, ("version", "updated_at")).save(alias)
        audit_record(actor=developer, action="alias.set", obj=alias)

    now = Alias.objects.get(pk=alias.pk)
    assert now.version_id == second.pk and now.name == "candidate"
    assert now.updated_at > stored.updated_at and now.updated_at == alias.updated_at


def test_rows_are_the_instances_the_orm_gives(db):
    for name, active in (("b", True), ("a", True), ("c", False)):
        Webhook.objects.create(name=name, url=f"https://example.com/{name}", secret="s" * 32, active=active)
    sql = f"SELECT {columns(Webhook)} FROM notifications_webhook t0 WHERE t0.active = %s ORDER BY t0.name"

    got = rows(Webhook, sql, [True])

    assert [_fields(hook) for hook in got] == [_fields(hook) for hook in Webhook.objects.filter(active=True)]
    assert [hook.name for hook in got] == ["a", "b"] and got[0].created_at.tzinfo is not None
    assert rows(Webhook, sql, [False])[0].name == "c"


def test_rows_of_some_fields_defer_the_rest_and_carry_extra_columns(developer):
    model = make_model(developer, name="m1")
    version = make_version(developer, model, tags={"k": "v"})
    fields = ("tags", "number", "id", "created_at")  # in any order: read in the model's
    sql = (
        f"SELECT {columns(ModelVersion, 'v', fields=fields)}, u.username FROM registry_modelversion v"
        " JOIN auth_user u ON u.id = v.created_by_id WHERE v.id = %s"
    )

    (got,) = rows(ModelVersion, sql, [version.pk], fields=fields, extra=("author",))

    assert (got.pk, got.number, got.tags, got.created_at) == (version.pk, 1, {"k": "v"}, version.created_at)
    assert got.author == developer.username
    assert got.get_deferred_fields() >= {"artifact_uri", "metrics", "state"}
