from __future__ import annotations

from tests.factories import make_model, make_version


def test_serializers_of_one_class_get_fields_of_their_own(db):
    # common.api builds a class's fields once and copies them: two serializers must not share
    # a bound field, nor see each other's input or errors, nested lists included.
    from registry.api import serializers as s

    good = s.VersionCreateIn(data={"artifact_uri": "s3://b/1", "tags": {"k": "v"}})
    bad = s.VersionCreateIn(data={"artifact_uri": "", "parents": [{"version_id": 999999, "relation": "nope"}]})

    assert good.is_valid() and not bad.is_valid()
    assert good.validated_data["tags"] == {"k": "v"} and not good.errors
    assert set(bad.errors) == {"artifact_uri", "parents"}
    assert bad.errors["parents"][0]["version_id"] == ["model version 999999 does not exist"]
    assert good.fields["artifact_uri"] is not bad.fields["artifact_uri"]
    assert good.fields["parents"] is not bad.fields["parents"]
    assert good.fields["artifact_uri"].parent is good and bad.fields["artifact_uri"].parent is bad


def test_answers_of_one_class_are_made_from_their_own_instances(developer):
    from registry.api import serializers as s

    model = make_model(developer, name="m1")
    first, second = make_version(developer, model), make_version(developer, model, tags={"k": "v"})
    for version in (first, second):
        version.visible_parent_edges, version.dataset_usage_list = [], []

    a, b = s.VersionOut(first), s.VersionOut(second)

    assert (a.data["number"], a.data["tags"]) == (1, {})
    assert (b.data["number"], b.data["tags"]) == (2, {"k": "v"})
    assert a.fields["tags"] is not b.fields["tags"] and a.fields["tags"].parent is a
