from __future__ import annotations

from types import SimpleNamespace

from django.utils import timezone
from rest_framework import serializers

from audit.api.serializers import AuditEventOut
from audit.models import AuditEvent
from governance import selectors as governance_selectors
from governance.api import serializers as gs
from registry import services
from registry.api import serializers as s
from tests.factories import approved, make_model, make_version


def test_serializers_of_one_class_get_fields_of_their_own(developer):
    # common.api builds a class's fields once and copies them: two serializers must not share
    # a bound field, nor see each other's input or errors, nested lists included.
    context = {"request": SimpleNamespace(user=developer)}  # parents are looked up among those it may see

    good = s.VersionCreateIn(data={"artifact_uri": "s3://b/1", "tags": {"k": "v"}}, context=context)
    bad = s.VersionCreateIn(
        data={"artifact_uri": "", "parents": [{"version_id": 999999, "relation": "nope"}]}, context=context
    )

    assert good.is_valid() and not bad.is_valid()
    assert good.validated_data["tags"] == {"k": "v"} and not good.errors
    assert set(bad.errors) == {"artifact_uri", "parents"}
    assert bad.errors["parents"][0]["version_id"] == ["model version 999999 does not exist"]
    assert good.fields["artifact_uri"] is not bad.fields["artifact_uri"]
    assert good.fields["parents"] is not bad.fields["parents"]
    assert good.fields["artifact_uri"].parent is good and bad.fields["artifact_uri"].parent is bad


def test_a_json_body_is_validated_as_drf_validates_it_with_optional_fields_left_out():
    # common.api.StrictSerializer skips the optional fields a JSON body leaves out: what comes
    # out must be what DRF's own walk over every field gives, for a body and for a form.
    from django.http import QueryDict

    from common.api import StrictSerializer

    class Plain(serializers.Serializer):
        name = serializers.CharField()
        note = serializers.CharField(required=False)
        count = serializers.IntegerField(default=3)
        labels = serializers.DictField(child=serializers.CharField(), required=False)

    class Strict(StrictSerializer, Plain):
        pass

    for data in (
        {"name": "a"},
        {"name": "a", "note": "n", "labels": {"k": "v"}},
        {"note": "n"},
        {"name": "a", "count": "x"},
        QueryDict("name=a&count=5"),
        QueryDict("note=n"),
    ):
        plain, strict = Plain(data=data), Strict(data=data)
        assert plain.is_valid() == strict.is_valid(), data
        assert (dict(strict.validated_data), strict.errors) == (dict(plain.validated_data), plain.errors), data
    strict = Strict(data={"name": "a"})
    assert strict.is_valid() and dict(strict.validated_data) == {"name": "a", "count": 3}


def test_answers_of_one_class_are_made_from_their_own_instances(developer):

    model = make_model(developer, name="m1")
    first, second = make_version(developer, model), make_version(developer, model, tags={"k": "v"})
    for version in (first, second):
        version.visible_parent_edges, version.dataset_usage_list = [], []

    a, b = s.VersionOut(first), s.VersionOut(second)

    assert (a.data["number"], a.data["tags"]) == (1, {})
    assert (b.data["number"], b.data["tags"]) == (2, {"k": "v"})
    assert a.fields["tags"] is not b.fields["tags"] and a.fields["tags"].parent is a


def _stock(serializer: object, instance: object) -> object:
    """What DRF's own ModelSerializer.to_representation answers for ``instance``."""
    return serializers.ModelSerializer.to_representation(serializer, instance)  # type: ignore[arg-type]


def test_answers_are_what_drf_itself_would_write(developer):
    # common.api.ModelAnswer reads plain columns directly and writes timestamps with the time zone
    # looked up once: the answers must be DRF's own, to the character, in UTC and in another zone.
    model = make_model(developer, name="m1", tags={"k": "v"})
    version = make_version(developer, model, tags={"t": "1"}, metrics={"auc": 0.91}, description="first")
    version.visible_parent_edges, version.dataset_usage_list = [], []
    alias = services.alias_set(actor=developer, model=model, name="candidate", number=version.number)
    token, _ = services.token_create(actor=developer, name="ci", expires_at=None)
    event = AuditEvent.objects.order_by("-seq").first()
    answers = [(s.VersionOut, version), (s.ModelOut, model), (s.AliasOut, alias), (s.TokenOut, token)]
    answers.append((AuditEventOut, event))
    for zone in ("UTC", "Europe/Paris"):
        with timezone.override(zone):
            for answer, instance in answers:
                serializer = answer(instance)
                assert serializer.data == _stock(answer(instance), instance), (answer.__name__, zone)
            shown = s.VersionOut(version).data["created_at"]
            assert shown.endswith("Z" if zone == "UTC" else ":00") and "+00:00" not in shown
    many = s.VersionOut([version, version], many=True).data
    assert many[0] == many[1] == _stock(s.VersionOut(version), version)


def test_nested_answers_follow_the_time_zone_of_each_answer(developer, owner, risk_officer):
    # A nested answer (a request's decisions) is shown by its class's own fields, shared by every
    # answer: what it shows must follow the zone of the answer being written, not the first one's.
    _, request = approved(developer, owner, risk_officer)
    shown = {}
    for zone in ("Europe/Paris", "UTC", "Europe/Paris"):
        with timezone.override(zone):
            answer = gs.RequestOut(governance_selectors.request_get(risk_officer, request.pk)).data
            shown.setdefault(zone, []).append(answer["decisions"][0]["created_at"])
    assert shown["UTC"][0].endswith("Z")
    assert shown["Europe/Paris"][0] == shown["Europe/Paris"][1]
    assert shown["Europe/Paris"][0].endswith(("+01:00", "+02:00"))
