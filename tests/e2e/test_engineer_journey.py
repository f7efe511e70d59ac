"""The foundation as an engineer meets it: a token, a model, three versions with lineage, the
impact of a dataset version, and clear refusals — all over HTTP with the real token scheme."""

from __future__ import annotations

from rest_framework.test import APIClient

from audit.models import AuditEvent
from registry import services
from tests.factories import digest


def bearer(user, name="laptop"):
    _, secret = services.token_create(actor=user, name=name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_an_engineer_registers_a_model_with_lineage_and_asks_for_impact(developer, outsider):
    api = bearer(developer)
    assert api.post("/api/v1/datasets/", {"name": "loans", "team": "credit-risk"}, format="json").status_code == 201
    loans = api.post(
        "/api/v1/datasets/loans/versions/", {"uri": "s3://d/loans/1", "digest": digest("loans-1")}, format="json"
    ).json()
    assert api.post("/api/v1/models/", {"name": "scorecard", "team": "credit-risk"}, format="json").status_code == 201

    v1 = api.post(
        "/api/v1/models/scorecard/versions/",
        {
            "artifact_uri": "s3://m/1",
            "artifact_sha256": digest("v1"),
            "datasets": [{"dataset_version_id": loans["id"], "role": "training"}],
        },
        format="json",
    ).json()
    v2 = api.post(
        "/api/v1/models/scorecard/versions/",
        {
            "artifact_uri": "s3://m/2",
            "artifact_sha256": digest("v2"),
            "parents": [{"version_id": v1["id"], "relation": "retrained_from"}],
        },
        format="json",
    ).json()
    v3 = api.post(
        "/api/v1/models/scorecard/versions/",
        {"artifact_uri": "s3://m/3", "parents": [{"version_id": v2["id"], "relation": "fine_tuned_from"}]},
        format="json",
    ).json()
    assert [v1["number"], v2["number"], v3["number"]] == [1, 2, 3]

    impact = api.get(f"/api/v1/dataset-versions/{loans['id']}/impact/").json()
    assert sorted(v["number"] for v in impact["versions"]) == [1, 2, 3]
    assert impact["hidden"] == 0

    upstream = api.get(f"/api/v1/versions/{v3['id']}/lineage/?direction=upstream&depth=5").json()
    assert sorted((n["number"], n["depth"]) for n in upstream["nodes"]) == [(1, -2), (2, -1), (3, 0)]
    assert {d["dataset"] for d in upstream["datasets"]} == {"loans"}

    bad_digest = api.post(
        "/api/v1/models/scorecard/versions/", {"artifact_uri": "s3://m/4", "artifact_sha256": "abc"}, format="json"
    )
    assert bad_digest.status_code == 400
    assert bad_digest.json()["fields"] == {"artifact_sha256": ["must be a SHA-256 digest: 64 hexadecimal characters"]}

    duplicate = api.post(
        "/api/v1/models/scorecard/versions/",
        {"artifact_uri": "s3://m/4", "artifact_sha256": digest("v1")},
        format="json",
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["fields"] == {"artifact_sha256": ["version 1 of scorecard already has this digest"]}

    cycle = api.post(
        f"/api/v1/versions/{v1['id']}/parents/", {"version_id": v3["id"], "relation": "retrained_from"}, format="json"
    )
    assert cycle.status_code == 400
    assert "cycle" in cycle.json()["fields"]["version_id"][0]

    elsewhere = bearer(outsider).post("/api/v1/models/scorecard/versions/", {"artifact_uri": "s3://x"}, format="json")
    assert elsewhere.status_code == 403
    assert elsewhere.json()["message"] == "Only the owning team (credit-risk) adds versions to model scorecard."

    assert AuditEvent.objects.filter(model_name="scorecard", action="version.created").count() == 3
