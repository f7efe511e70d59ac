from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from registry import selectors, services
from registry.api import views
from registry.models import DatasetUsage, ModelVersion, RegisteredModel, VersionParent
from tests.factories import make_dataset_version, make_model, make_version


def _chain(actor, model, length):
    """``length`` versions of ``model``, each derived from the one before: v1 ← v2 ← … ← vN."""
    versions = [make_version(actor, model)]
    for _ in range(length - 1):
        versions.append(make_version(actor, model, parents=[(versions[-1], "retrained_from")]))
    return versions


def _lineage(client, version, **params):
    response = client.get(f"/api/v1/versions/{version.pk}/lineage/", params)
    assert response.status_code == 200, response.data
    return {(n["model"], n["number"]): n["depth"] for n in response.data["nodes"]}


def test_parents_and_datasets_given_at_creation_are_recorded_and_audited(api, developer):
    m1 = make_model(developer, name="m1")
    v1 = make_version(developer, m1)
    loans = make_dataset_version(developer, name="loans")
    response = api(developer).post(
        "/api/v1/models/m1/versions/",
        {
            "artifact_uri": "s3://m1/2",
            "parents": [{"version_id": v1.pk, "relation": "fine_tuned_from"}],
            "datasets": [{"dataset_version_id": loans.pk, "role": "training"}],
        },
        format="json",
    )
    assert response.status_code == 201, response.data
    assert response.data["parents"] == [
        {"version_id": v1.pk, "model": "m1", "number": 1, "relation": "fine_tuned_from"}
    ]
    assert response.data["datasets"] == [
        {"dataset_version_id": loans.pk, "dataset": "loans", "number": 1, "role": "training"}
    ]
    event = AuditEvent.objects.get(action="version.created", after__number=2)
    assert event.after["parents"] == [{"version_id": v1.pk, "relation": "fine_tuned_from"}]
    assert event.after["datasets"] == [{"dataset_version_id": loans.pk, "role": "training"}]


def test_parent_and_dataset_are_added_to_a_draft_later(api, developer):
    m1 = make_model(developer, name="m1")
    v1, v2 = make_version(developer, m1), make_version(developer, m1)
    loans = make_dataset_version(developer, name="loans")
    client = api(developer)
    response = client.post(
        f"/api/v1/versions/{v2.pk}/parents/", {"version_id": v1.pk, "relation": "retrained_from"}, format="json"
    )
    assert response.status_code == 201, response.data
    assert [p["number"] for p in response.data["parents"]] == [1]
    response = client.post(
        "/api/v1/models/m1/versions/2/datasets/", {"dataset_version_id": loans.pk, "role": "validation"}, format="json"
    )
    assert response.status_code == 201, response.data
    assert [(d["dataset"], d["role"]) for d in response.data["datasets"]] == [("loans", "validation")]
    assert AuditEvent.objects.get(action="lineage.parent_added").after == {
        "parent_version_id": v1.pk,
        "relation": "retrained_from",
    }
    assert AuditEvent.objects.get(action="lineage.dataset_added").after == {
        "dataset_version_id": loans.pk,
        "role": "validation",
    }


def test_the_same_parent_twice_is_a_conflict(api, developer):
    v1, v2 = _chain(developer, make_model(developer, name="m1"), 2)
    response = api(developer).post(
        f"/api/v1/versions/{v2.pk}/parents/", {"version_id": v1.pk, "relation": "distilled_from"}, format="json"
    )
    assert response.status_code == 409
    assert list(response.data["fields"]) == ["version_id"]
    assert VersionParent.objects.count() == 1


def test_a_parent_that_would_close_a_cycle_is_refused_and_nothing_is_written(api, developer):
    a, _b, c = _chain(developer, make_model(developer, name="m1"), 3)  # a ← b ← c
    events_before = AuditEvent.objects.count()
    response = api(developer).post(
        f"/api/v1/versions/{a.pk}/parents/", {"version_id": c.pk, "relation": "retrained_from"}, format="json"
    )
    assert response.status_code == 400
    assert response.data["code"] == "invalid"
    assert list(response.data["fields"]) == ["version_id"]
    assert "cycle" in response.data["message"]
    assert not VersionParent.objects.filter(child=a).exists()
    assert VersionParent.objects.count() == 2
    assert AuditEvent.objects.count() == events_before


def test_a_version_cannot_be_its_own_parent(api, developer):
    v1 = make_version(developer, make_model(developer, name="m1"))
    response = api(developer).post(
        f"/api/v1/versions/{v1.pk}/parents/", {"version_id": v1.pk, "relation": "retrained_from"}, format="json"
    )
    assert response.status_code == 400
    assert response.data["fields"] == {"version_id": ["a version cannot be its own parent (lineage cycle)"]}
    assert not VersionParent.objects.exists()


def test_a_parent_from_a_model_you_cannot_see_does_not_exist_for_you(api, owner, outsider):
    hidden = make_version(owner, make_model(owner, name="secret", restricted=True))
    make_version(outsider, make_model(outsider, team="pricing", name="p1"))
    response = api(outsider).post(
        "/api/v1/models/p1/versions/1/parents/", {"version_id": hidden.pk, "relation": "retrained_from"}, format="json"
    )
    assert response.status_code == 400
    assert response.data["fields"] == {"version_id": [f"model version {hidden.pk} does not exist"]}


def test_a_hidden_parent_gets_the_answer_a_missing_one_gets_before_any_other_check(api, owner, outsider):
    """Even on a version whose lineage is frozen, which is checked after the parent is read."""
    hidden = make_version(owner, make_model(owner, name="secret", restricted=True))
    mine = make_version(outsider, make_model(outsider, team="pricing", name="p1"))
    services.version_set_state(actor=outsider, version=mine, state="submitted")
    client = api(outsider)
    answers = [
        client.post(f"/api/v1/versions/{mine.pk}/parents/", {"version_id": pk, "relation": "copied"}, format="json")
        for pk in (hidden.pk, 10**9)
    ]
    assert [(r.status_code, sorted(r.data["fields"])) for r in answers] == [(400, ["relation", "version_id"])] * 2
    assert answers[0].data["fields"]["version_id"] == [f"model version {hidden.pk} does not exist"]


def test_an_id_with_a_fraction_is_refused_not_rounded(api, developer):
    v1, v2 = _chain(developer, make_model(developer, name="m1"), 2)
    loans = make_dataset_version(developer, name="loans")
    client = api(developer)
    parent = client.post(
        f"/api/v1/versions/{v2.pk}/parents/", {"version_id": v1.pk + 0.9, "relation": "distilled_from"}, format="json"
    )
    dataset = client.post(
        f"/api/v1/versions/{v2.pk}/datasets/", {"dataset_version_id": loans.pk + 0.5, "role": "test"}, format="json"
    )
    assert (parent.status_code, parent.data["fields"]["version_id"]) == (400, ["A valid integer is required."])
    assert (dataset.status_code, dataset.data["fields"]) == (
        400,
        {"dataset_version_id": ["A valid integer is required."]},
    )
    assert not DatasetUsage.objects.exists() and VersionParent.objects.count() == 1


def test_a_new_version_names_each_parent_and_dataset_once(api, developer):
    v1 = make_version(developer, make_model(developer, name="m1"))
    loans = make_dataset_version(developer, name="loans")
    client = api(developer)
    twice = {"version_id": v1.pk, "relation": "retrained_from"}
    parents = client.post(
        "/api/v1/models/m1/versions/", {"artifact_uri": "s3://x", "parents": [twice, twice]}, format="json"
    )
    used = {"dataset_version_id": loans.pk, "role": "training"}
    datasets = client.post(
        "/api/v1/models/m1/versions/", {"artifact_uri": "s3://x", "datasets": [used, used]}, format="json"
    )
    assert (parents.status_code, parents.data["fields"]) == (
        400,
        {"parents[1].version_id": ["named twice in this request"]},
    )
    assert (datasets.status_code, datasets.data["fields"]) == (
        400,
        {"datasets[1].dataset_version_id": ["named twice in this request"]},
    )
    assert ModelVersion.objects.count() == 1


def test_a_draft_of_a_decommissioned_model_takes_no_lineage(api, developer):
    v1 = make_version(developer, make_model(developer, name="m1"))
    other = make_version(developer, make_model(developer, name="m2"))
    loans = make_dataset_version(developer, name="loans")
    m1 = RegisteredModel.objects.get(name="m1")
    services.model_set_status(actor=developer, model=m1, status="decommissioned", reason="replaced")
    client = api(developer)
    answers = [
        client.post(
            f"/api/v1/versions/{v1.pk}/datasets/", {"dataset_version_id": loans.pk, "role": "test"}, format="json"
        ),
        client.post(
            f"/api/v1/versions/{v1.pk}/parents/", {"version_id": other.pk, "relation": "distilled_from"}, format="json"
        ),
    ]
    assert [(r.status_code, r.data["message"]) for r in answers] == [
        (409, "Model m1 is decommissioned: its lineage is closed.")
    ] * 2
    assert not DatasetUsage.objects.exists() and not VersionParent.objects.exists()


def test_bad_relation_and_role_are_refused_naming_the_field(api, developer):
    v1, v2 = _chain(developer, make_model(developer, name="m1"), 2)
    loans = make_dataset_version(developer, name="loans")
    client = api(developer)
    response = client.post(
        f"/api/v1/versions/{v2.pk}/parents/", {"version_id": v1.pk, "relation": "copied"}, format="json"
    )
    assert (response.status_code, list(response.data["fields"])) == (400, ["relation"])
    response = client.post(
        f"/api/v1/versions/{v2.pk}/datasets/", {"dataset_version_id": loans.pk, "role": "lunch"}, format="json"
    )
    assert (response.status_code, list(response.data["fields"])) == (400, ["role"])


def test_outsider_cannot_add_lineage_to_another_teams_version(api, owner, outsider):
    v1, v2 = _chain(owner, make_model(owner, name="m1"), 2)
    loans = make_dataset_version(outsider, team="pricing", name="loans")
    client = api(outsider)
    response = client.post(
        f"/api/v1/versions/{v1.pk}/parents/", {"version_id": v2.pk, "relation": "retrained_from"}, format="json"
    )
    assert response.status_code == 403
    assert response.data["message"] == "Only the owning team (credit-risk) may change versions of model m1."
    response = client.post(
        f"/api/v1/versions/{v1.pk}/datasets/", {"dataset_version_id": loans.pk, "role": "test"}, format="json"
    )
    assert response.status_code == 403
    assert not DatasetUsage.objects.exists()


def test_lineage_of_a_submitted_version_is_frozen(api, developer):
    v1, v2 = _chain(developer, make_model(developer, name="m1"), 2)
    loans = make_dataset_version(developer, name="loans")
    services.version_set_state(actor=developer, version=v1, state="submitted")
    client = api(developer)
    response = client.post(
        f"/api/v1/versions/{v1.pk}/datasets/", {"dataset_version_id": loans.pk, "role": "training"}, format="json"
    )
    assert response.status_code == 409
    assert response.data["message"] == (
        "Version 1 of m1 is submitted: its lineage is frozen with its content; register a new version."
    )
    response = client.post(
        f"/api/v1/versions/{v1.pk}/parents/", {"version_id": v2.pk, "relation": "retrained_from"}, format="json"
    )
    assert response.status_code == 409
    assert not DatasetUsage.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="lineage.").exists()


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"direction": "upstream", "depth": 1}, {3: 0, 2: -1}),
        ({"direction": "upstream", "depth": 5}, {3: 0, 2: -1, 1: -2}),
        ({"direction": "downstream", "depth": 1}, {3: 0, 4: 1}),
        ({"direction": "downstream", "depth": 3}, {3: 0, 4: 1, 5: 2}),
        ({"direction": "both", "depth": 1}, {3: 0, 2: -1, 4: 1}),
        ({}, {3: 0, 2: -1, 1: -2, 4: 1, 5: 2}),
    ],
)
def test_lineage_walks_up_and_down_to_the_given_depth(api, developer, params, expected):
    chain = _chain(developer, make_model(developer, name="m1"), 5)
    nodes = _lineage(api(developer), chain[2], **params)
    assert nodes == {("m1", number): depth for number, depth in expected.items()}


def test_lineage_lists_the_edges_and_datasets_between_the_versions_shown(api, developer):
    loans = make_dataset_version(developer, name="loans")
    m1 = make_model(developer, name="m1")
    v1 = make_version(developer, m1, datasets=[(loans, "training")])
    v2 = make_version(developer, m1, parents=[(v1, "fine_tuned_from")])
    response = api(developer).get("/api/v1/models/m1/versions/2/lineage/?direction=upstream")
    assert response.status_code == 200
    assert response.data["root"] == v2.pk
    assert response.data["edges"] == [{"child_id": v2.pk, "parent_id": v1.pk, "relation": "fine_tuned_from"}]
    assert [(d["version_id"], d["dataset"], d["digest"], d["role"]) for d in response.data["datasets"]] == [
        (v1.pk, "loans", loans.digest, "training")
    ]
    assert response.data["hidden"] == 0


def test_lineage_leaves_out_versions_you_cannot_see_and_counts_them(api, owner, outsider):
    secret = make_version(owner, make_model(owner, name="secret", restricted=True))
    child = make_version(owner, make_model(owner, name="open"), parents=[(secret, "distilled_from")])
    response = api(outsider).get(f"/api/v1/versions/{child.pk}/lineage/")
    assert response.status_code == 200
    assert [(n["model"], n["number"]) for n in response.data["nodes"]] == [("open", 1)]
    assert response.data["edges"] == []
    assert response.data["hidden"] == 1
    assert api(owner).get(f"/api/v1/versions/{child.pk}/lineage/").data["hidden"] == 0


@pytest.mark.parametrize(
    "query, field",
    [
        ("direction=sideways", "direction"),
        ("depth=0", "depth"),
        ("depth=51", "depth"),
        ("depth=-1", "depth"),
        ("depth=two", "depth"),
        ("depth=%C2%B2", "depth"),
    ],
)
def test_bad_lineage_parameters_are_refused_naming_them(api, developer, query, field):
    v1 = make_version(developer, make_model(developer, name="m1"))
    response = api(developer).get(f"/api/v1/versions/{v1.pk}/lineage/?{query}")
    assert response.status_code == 400
    assert list(response.data["fields"]) == [field]


def test_the_lineage_walk_is_one_query_whatever_the_depth(developer):
    short = _chain(developer, make_model(developer, name="short"), 3)
    long = _chain(developer, make_model(developer, name="long"), 10)
    counts = []
    selectors.lineage(developer, short[-1], direction="upstream", depth=50)  # a warm connection (common.statements)
    for chain in (short, long):
        with CaptureQueriesContext(connection) as queries:
            graph = selectors.lineage(developer, chain[-1], direction="upstream", depth=50)
        assert len(graph.versions) == len(chain)
        assert sum("RECURSIVE" in q["sql"].upper() for q in queries.captured_queries) == 1
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1]


def test_the_lineage_endpoint_costs_the_same_queries_for_3_and_10_generations(
    api, developer, django_assert_num_queries
):
    short = _chain(developer, make_model(developer, name="short"), 3)
    long = _chain(developer, make_model(developer, name="long"), 10)
    client = api(developer)
    _lineage(client, short[1], depth=50)  # a warm connection: its statements are prepared (common.statements)
    with django_assert_num_queries(9) as few:
        assert len(_lineage(client, short[1], depth=50)) == 3
    with django_assert_num_queries(9) as many:
        assert len(_lineage(client, long[4], depth=50)) == 10
    assert len(few.captured_queries) == len(many.captured_queries)


def test_a_lineage_larger_than_the_limit_shows_the_nearest_versions_and_counts_the_rest(api, developer, monkeypatch):
    monkeypatch.setattr(selectors, "MAX_LINEAGE_NODES", 3)
    chain = _chain(developer, make_model(developer, name="m1"), 6)
    response = api(developer).get(f"/api/v1/versions/{chain[2].pk}/lineage/", {"depth": 50})
    assert {n["number"]: n["depth"] for n in response.data["nodes"]} == {2: -1, 3: 0, 4: 1}
    assert (response.data["left_out"], response.data["hidden"]) == (3, 0)
    assert len(response.data["edges"]) == 2


def test_impact_lists_every_version_that_used_the_data_directly_or_through_ancestors(api, developer):
    loans = make_dataset_version(developer, name="loans")
    scorecard, pricing = make_model(developer, name="scorecard"), make_model(developer, name="pricing")
    s1 = make_version(developer, scorecard, datasets=[(loans, "training")])
    s2 = make_version(developer, scorecard, parents=[(s1, "retrained_from")])
    p1 = make_version(developer, pricing, parents=[(s2, "distilled_from")])
    make_version(developer, pricing, parents=[(p1, "fine_tuned_from")])
    make_version(developer, scorecard)  # unrelated: s3
    response = api(developer).get(f"/api/v1/dataset-versions/{loans.pk}/impact/")
    assert response.status_code == 200
    assert response.data["dataset_version_id"] == loans.pk
    assert [(v["model"], v["number"]) for v in response.data["versions"]] == [
        ("pricing", 1),
        ("pricing", 2),
        ("scorecard", 1),
        ("scorecard", 2),
    ]
    lineage = {(v["model"], v["number"]): (v["parents"], v["datasets"]) for v in response.data["versions"]}
    assert [(p["model"], p["number"]) for p in lineage["pricing", 1][0]] == [("scorecard", 2)]
    assert [d["dataset"] for d in lineage["scorecard", 1][1]] == ["loans"]
    assert (response.data["total"], response.data["truncated"], response.data["hidden"]) == (4, False, 0)


def test_impact_beyond_what_is_listed_says_how_many_there_are(api, developer, monkeypatch):
    monkeypatch.setattr(views, "IMPACT_LIMIT", 2)
    loans = make_dataset_version(developer, name="loans")
    scorecard = make_model(developer, name="scorecard")
    for _ in range(3):
        make_version(developer, scorecard, datasets=[(loans, "training")])
    response = api(developer).get(f"/api/v1/dataset-versions/{loans.pk}/impact/")
    assert [v["number"] for v in response.data["versions"]] == [1, 2]
    assert (response.data["total"], response.data["truncated"]) == (3, True)


def test_impact_counts_versions_you_cannot_see(api, owner, outsider):
    loans = make_dataset_version(owner, name="loans")
    make_version(owner, make_model(owner, name="secret", restricted=True), datasets=[(loans, "training")])
    make_version(owner, make_model(owner, name="open"), datasets=[(loans, "test")])
    response = api(outsider).get(f"/api/v1/dataset-versions/{loans.pk}/impact/")
    assert [(v["model"], v["number"]) for v in response.data["versions"]] == [("open", 1)]
    assert response.data["hidden"] == 1
