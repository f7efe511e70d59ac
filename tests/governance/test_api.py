"""The governance API as an engineer and a risk officer use it."""

from __future__ import annotations

from datetime import date, timedelta

from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from common.roles import Role
from governance import services
from governance.management.commands.demo_seed import ASSESSMENTS as ANSWERS
from tests.factories import UserFactory, assessed_model, make_version, submitted


def test_an_owner_submits_a_version_and_gets_the_request_with_its_pinned_policy(api, developer, owner):
    model = assessed_model(owner, 2)
    make_version(developer, model)
    response = api(owner).post(f"/api/v1/models/{model.name}/versions/1/submit/", {"rationale": "v1"}, format="json")
    assert response.status_code == 201, response.data
    body = response.data
    assert (body["kind"], body["state"], body["version"], body["tier"]) == ("release", "open", 1, 2)
    assert body["policy"] == {"id": body["policy"]["id"], "tier": 2, "version": 1}
    assert [(s["name"], s["state"]) for s in body["stages"]] == [
        ("Independent validation", "active"),
        ("Risk officer", "waiting"),
    ]
    assert AuditEvent.objects.filter(action="approval_request.submitted", object_id=str(body["id"])).exists()

    again = api(owner).post(f"/api/v1/models/{model.name}/versions/1/submit/", {}, format="json")
    assert again.status_code == 409
    assert again.data["message"].startswith(f"Version 1 of {model.name} is submitted; it cannot become submitted")


def test_someone_off_the_owning_team_cannot_submit(api, developer, owner, outsider):
    model = assessed_model(owner, 4)
    make_version(developer, model)
    response = api(outsider).post(f"/api/v1/models/{model.name}/versions/1/submit/", {}, format="json")
    assert response.status_code == 403
    assert response.data["message"] == f"Only the owning team (credit-risk) submits versions of {model.name}."


def test_the_submitter_and_the_creator_are_told_why_they_cannot_sign(api, developer, owner, risk_officer):
    _, request = submitted(developer, owner, 4)
    url = f"/api/v1/approval-requests/{request.pk}/decisions/"
    mine = api(owner).post(url, {"outcome": "approve"}, format="json")
    assert (mine.status_code, mine.data["message"]) == (403, "You cannot approve: you submitted this version.")
    built = api(developer).post(url, {"outcome": "reject", "comment": "no"}, format="json")
    assert (built.status_code, built.data["message"]) == (403, "You cannot reject: you created this version.")


def test_a_risk_officer_approves_and_the_response_shows_the_request_moved_on(api, developer, owner, risk_officer):
    _, request = submitted(developer, owner, 4)
    response = api(risk_officer).post(
        f"/api/v1/approval-requests/{request.pk}/decisions/", {"outcome": "approve"}, format="json"
    )
    assert response.status_code == 201, response.data
    assert response.data["decision"]["person"] == "risk"
    assert response.data["request"]["state"] == "approved"
    version = api(owner).get(f"/api/v1/models/{request.model.name}/versions/1/")
    assert version.data["state"] == "approved"


def test_bad_decisions_are_refused_naming_the_field(api, developer, owner, risk_officer):
    _, request = submitted(developer, owner, 4)
    url = f"/api/v1/approval-requests/{request.pk}/decisions/"
    no_comment = api(risk_officer).post(url, {"outcome": "reject"}, format="json")
    assert (no_comment.status_code, no_comment.data["fields"]) == (400, {"comment": ["is required"]})
    bad = api(risk_officer).post(url, {"outcome": "maybe"}, format="json")
    assert bad.status_code == 400 and "outcome" in bad.data["fields"]
    rule = ["must be after today and within 10 years"]
    for due in (timezone.localdate(), date(9999, 12, 31)):  # the second: the gate would have no day to close on
        refused = api(risk_officer).post(
            url,
            {
                "outcome": "approve_with_conditions",
                "comment": "ok if",
                "conditions": [{"description": "x", "owner": "owner", "due_date": str(due)}],
            },
            format="json",
        )
        assert (refused.status_code, refused.data["fields"]) == (400, {"conditions[0].due_date": rule})
    assert not request.decisions.exists()


def test_a_decision_on_a_closed_request_is_a_409(api, developer, owner, risk_officer, risk_officer_2):
    _, request = submitted(developer, owner, 4)
    url = f"/api/v1/approval-requests/{request.pk}/decisions/"
    assert api(risk_officer).post(url, {"outcome": "approve"}, format="json").status_code == 201
    late = api(risk_officer_2).post(url, {"outcome": "approve"}, format="json")
    assert late.status_code == 409
    assert late.data["message"] == f"Request #{request.pk} is approved; it takes no more decisions."


def test_awaiting_me_lists_what_each_person_may_decide(api, developer, owner, assigned_validator, risk_officer):
    _, t2 = submitted(developer, owner, 2)
    _, t4 = submitted(developer, owner, 4)

    def awaiting(user):
        response = api(user).get("/api/v1/approval-requests/?awaiting=me")
        assert response.status_code == 200
        return [r["id"] for r in response.data["results"]]

    assert awaiting(assigned_validator) == [t2.pk]
    assert awaiting(risk_officer) == [t4.pk]
    assert awaiting(owner) == [] and awaiting(developer) == []
    services.decision_record(actor=assigned_validator, request=t2, outcome="approve")
    assert awaiting(assigned_validator) == []
    assert sorted(awaiting(risk_officer)) == sorted([t2.pk, t4.pk])


def test_requests_filter_by_state_tier_and_model(api, developer, owner, risk_officer):
    _, t3 = submitted(developer, owner, 3)
    _, t4 = submitted(developer, owner, 4)
    services.decision_record(actor=risk_officer, request=t4, outcome="approve")

    def ids(query):
        response = api(risk_officer).get(f"/api/v1/approval-requests/?{query}")
        assert response.status_code == 200, response.data
        return [r["id"] for r in response.data["results"]]

    assert ids("state=open") == [t3.pk]
    assert ids("tier=4") == [t4.pk]
    assert ids(f"model={t3.model.name}") == [t3.pk]
    assert ids("ordering=submitted_at") == [t3.pk, t4.pk]
    assert api(risk_officer).get("/api/v1/approval-requests/?awaiting=you").status_code == 400


def test_the_submitter_withdraws_and_others_cannot(api, developer, owner, outsider):
    _, request = submitted(developer, owner, 3)
    url = f"/api/v1/approval-requests/{request.pk}/withdraw/"
    denied = api(developer).post(url, {"reason": "mine"}, format="json")
    assert (denied.status_code, denied.data["message"]) == (
        403,
        "Only the submitter or the model's owner withdraws a request.",
    )
    done = api(owner).post(url, {"reason": "wrong data"}, format="json")
    assert (done.status_code, done.data["state"], done.data["closed_reason"]) == (200, "withdrawn", "wrong data")


def test_a_stricter_tier_a_risk_officer_asked_for_is_withdrawn_only_by_a_risk_officer(
    api, owner, risk_officer, risk_officer_2
):
    """The model's owner cannot take back the check a risk officer put on the model."""
    model = assessed_model(owner, 3)
    request = services.tier_override_request(actor=risk_officer, model=model, tier=1, rationale="feeds capital")
    url = f"/api/v1/approval-requests/{request.pk}/withdraw/"
    denied = api(owner).post(url, {"reason": "T3 is enough"}, format="json")
    assert (denied.status_code, denied.data["message"]) == (
        403,
        "A risk officer opened this request: only a risk officer independent of the model withdraws it.",
    )
    done = api(risk_officer_2).post(url, {"reason": "capital use ended"}, format="json")
    assert (done.status_code, done.data["state"]) == (200, "withdrawn")


def test_a_risk_officer_on_the_owning_team_does_not_withdraw_a_check_on_its_model(api, owner, risk_officer, teams):
    """Withdrawing a check lets the model off it, as an exception or a waiver does: only a risk
    officer independent of the model does it."""
    model = assessed_model(owner, 3)
    request = services.tier_override_request(actor=risk_officer, model=model, tier=1, rationale="feeds capital")
    colleague = UserFactory(username="ro-on-team", groups=[Role.RISK_OFFICER, "credit-risk"])
    url = f"/api/v1/approval-requests/{request.pk}/withdraw/"
    denied = api(colleague).post(url, {"reason": "T3 is enough"}, format="json")
    assert (denied.status_code, denied.data["message"]) == (
        403,
        "You cannot withdraw this request: you are on the owning team (credit-risk).",
    )
    request.refresh_from_db()
    assert request.state == "open"


def test_a_check_stays_one_when_its_opener_leaves_the_risk_officers(api, owner, risk_officer):
    model = assessed_model(owner, 3)
    request = services.tier_override_request(actor=risk_officer, model=model, tier=1, rationale="feeds capital")
    risk_officer.groups.remove(Group.objects.get(name=Role.RISK_OFFICER))
    denied = api(owner).post(f"/api/v1/approval-requests/{request.pk}/withdraw/", {"reason": "gone"}, format="json")
    assert (denied.status_code, denied.data["message"]) == (
        403,
        "A risk officer opened this request: only a risk officer independent of the model withdraws it.",
    )
    opened = AuditEvent.objects.get(action="approval_request.submitted", object_id=str(request.pk))
    assert opened.after["check"] is True


def test_a_stricter_tier_asked_for_is_asked_again_when_the_owner_reassesses_in_between(owner, risk_officer):
    """T3, a risk officer asks for T1, the owner's reassessment says T2: T2 applies at once, and
    the ask for T1 is put again from T2, in the risk officer's name, not dropped."""
    model = assessed_model(owner, 3)
    asked = services.tier_override_request(actor=risk_officer, model=model, tier=1, rationale="feeds capital")
    answers, flags = ANSWERS[2]
    services.assessment_record(actor=owner, model=model, answers=answers, flags=flags)
    model.refresh_from_db()
    asked.refresh_from_db()
    assert (model.risk_tier, asked.state) == (2, "withdrawn")
    (again,) = model.approval_requests.filter(state="open")
    assert (again.kind, again.tier, again.requested_tier) == ("tier_change", 2, 1)
    assert (again.submitted_by, again.opened_as_check) == (risk_officer, True)
    assert again.rationale == "feeds capital (asked again under T2)"


def test_a_model_keeps_its_team_while_a_request_about_it_is_open(api, developer, owner, teams):
    """Its independent reviewer was chosen against the team: moving it mid-approval would let a
    colleague of its developers sign. Once the request is withdrawn, it moves."""
    version, request = submitted(developer, owner, 3)
    owner.groups.add(teams["pricing"])
    url = f"/api/v1/models/{version.model.name}/"

    refused = api(owner).patch(url, {"team": "pricing"}, format="json")

    assert refused.status_code == 409
    assert refused.data["fields"] == {
        "team": [
            f"{version.model.name} has open requests (#{request.pk}), put to people chosen against its team "
            "(credit-risk); decide or withdraw them before it moves to pricing"
        ]
    }
    services.request_withdraw(actor=owner, request=request, reason="moving to pricing")
    moved = api(owner).patch(url, {"team": "pricing"}, format="json")
    assert (moved.status_code, moved.data["team"]) == (200, "pricing")


def test_restricted_models_requests_are_invisible_to_outsiders(api, developer, owner, outsider):
    model = assessed_model(owner, 4, restricted=True)
    version = make_version(developer, model)
    request = services.request_submit(actor=owner, version=version)
    assert api(outsider).get(f"/api/v1/approval-requests/{request.pk}/").status_code == 404
    assert api(outsider).get("/api/v1/approval-requests/").data["results"] == []


def test_the_assessment_is_recorded_and_read_with_its_rationale(api, owner, outsider, risk_officer):
    model = assessed_model(owner, 4)
    answers, _ = ANSWERS[4]
    url = f"/api/v1/models/{model.name}/risk-assessment/"
    denied = api(outsider).post(url, {"answers": answers, "flags": ["regulatory_capital"]}, format="json")
    assert denied.status_code == 403
    bad = api(owner).post(url, {"answers": {**answers, "scale": "galactic"}}, format="json")
    assert bad.status_code == 400 and list(bad.data["fields"]) == ["answers.scale"]
    made = api(owner).post(url, {"answers": answers, "flags": ["regulatory_capital"]}, format="json")
    assert made.status_code == 201, made.data
    assert (made.data["inherent_tier"], made.data["rationale"]["floors_applied"]) == (1, {"regulatory_capital": 1})
    assert "raised to T1 by the floor for regulatory_capital" in made.data["explanation"]
    read = api(outsider).get(url)
    assert read.data["id"] == made.data["id"]
    assert api(owner).get(f"/api/v1/models/{model.name}/").data["risk_tier"] == 1


def test_a_tier_override_is_a_request_for_a_second_risk_officer(api, owner, risk_officer):
    model = assessed_model(owner, 2)
    response = api(risk_officer).post(
        f"/api/v1/models/{model.name}/tier-override/", {"tier": 4, "rationale": "internal use only"}, format="json"
    )
    assert response.status_code == 201, response.data
    assert (response.data["kind"], response.data["requested_tier"], response.data["tier"]) == ("tier_change", 4, 2)
    assert [s["name"] for s in response.data["stages"]] == ["Second risk officer"]
    own = api(risk_officer).post(
        f"/api/v1/approval-requests/{response.data['id']}/decisions/", {"outcome": "approve"}, format="json"
    )
    assert own.data["message"] == "You cannot approve: you asked for this tier change."
    no_reason = api(risk_officer).post(f"/api/v1/models/{model.name}/tier-override/", {"tier": 3}, format="json")
    assert no_reason.status_code == 400 and "rationale" in no_reason.data["fields"]


def test_policies_and_the_scorecard_are_readable(api, developer):
    policies = api(developer).get("/api/v1/policies/")
    assert [(p["tier"], p["version"], p["status"]) for p in policies.data] == [
        (t, 1, "published") for t in (1, 2, 3, 4)
    ]
    t1 = policies.data[0]
    assert [(s["name"], s["step"], s["quorum"]) for s in t1["stages"]] == [
        ("Independent validation", 1, 1),
        ("Compliance", 2, 1),
        ("Risk officer", 2, 1),
        ("Model risk committee", 3, 2),
    ]
    assert (t1["revalidation_months"], t1["min_distinct_people"]) == (12, 5)
    assert api(developer).get(f"/api/v1/policies/{t1['id']}/").data["tier"] == 1
    scorecard = api(developer).get("/api/v1/scorecard/")
    assert scorecard.data["rules"]["floors"]["regulatory_capital"] == 1


def test_a_request_page_costs_the_same_queries_with_one_decision_or_twenty(
    api, developer, owner, risk_officer, django_assert_max_num_queries
):
    deciders = [UserFactory(username=f"member{i}", groups=[Role.COMMITTEE_MEMBER]) for i in range(20)]
    draft = services.policy_draft(actor=risk_officer, tier=4)
    stage = {**draft.stages[0], "name": "Committee", "role": Role.COMMITTEE_MEMBER.value, "quorum": 20}
    services.document_update(actor=risk_officer, document=draft, changes={"stages": [stage]})
    services.document_publish(actor=risk_officer, document=draft)
    _, request = submitted(developer, owner, 4)
    due = timezone.localdate() + timedelta(days=9)
    for person in deciders[:1]:
        services.decision_record(
            actor=person,
            request=request,
            outcome="approve_with_conditions",
            comment="fine",
            conditions=[services.ConditionIn("check", owner, due)],
        )
    client = api(risk_officer)
    url = f"/api/v1/approval-requests/{request.pk}/"
    with django_assert_max_num_queries(12) as one:
        assert len(client.get(url).data["decisions"]) == 1
    for person in deciders[1:20]:
        services.decision_record(
            actor=person,
            request=request,
            outcome="approve_with_conditions",
            comment="fine",
            conditions=[services.ConditionIn("check", owner, due)],
        )
    with django_assert_max_num_queries(len(one.captured_queries)):
        body = client.get(url).data
    assert (len(body["decisions"]), len(body["conditions"])) == (20, 20)


def test_a_risk_officer_assigns_a_validator_who_then_sees_the_request(api, developer, owner, validator, risk_officer):
    _, request = submitted(developer, owner, 2)
    queue = "/api/v1/approval-requests/?awaiting=me"
    assert api(validator).get(queue).data["results"] == []
    body = {"validator": "validator", "model": request.model.name}
    denied = api(owner).post("/api/v1/validator-assignments/", body, format="json")
    assert (denied.status_code, denied.data["message"]) == (403, "Only a risk officer assigns validators.")
    assert api(risk_officer).post("/api/v1/validator-assignments/", body, format="json").status_code == 204
    assert [r["id"] for r in api(validator).get(queue).data["results"]] == [request.pk]
    assert api(risk_officer).post("/api/v1/validator-assignments/", body, format="json").status_code == 204
    assert AuditEvent.objects.filter(action="validator.assigned", model_name=request.model.name).count() == 1
    for _ in range(2):  # unassigning twice, likewise: the second changes nothing and records nothing
        assert api(risk_officer).post("/api/v1/validator-assignments/remove/", body, format="json").status_code == 204
    assert AuditEvent.objects.filter(action="validator.unassigned", model_name=request.model.name).count() == 1
    assert api(validator).get(queue).data["results"] == []
    signing = api(validator).post(
        f"/api/v1/approval-requests/{request.pk}/decisions/", {"outcome": "approve"}, format="json"
    )
    assert signing.data["message"] == (
        f"You cannot approve: you are not assigned to validate {request.model.name} or its team's models."
    )
    both = api(risk_officer).post(
        "/api/v1/validator-assignments/", {"validator": "owner", "team": "credit-risk"}, format="json"
    )
    assert (both.status_code, both.data["fields"]) == (400, {"validator": ["owner is not a validator"]})


def test_an_exception_lasts_no_longer_than_the_tier_allows(api, developer, owner, risk_officer):
    model = assessed_model(owner, 1)
    make_version(developer, model)
    url = f"/api/v1/models/{model.name}/versions/1/exceptions/"
    body = {
        "scope": "shadow use in production before validation",
        "compensating_control": "every decision reviewed by an underwriter",
        "reason": "regulatory deadline",
        "expires_at": (timezone.now() + timedelta(days=31)).isoformat(),
    }
    too_long = api(risk_officer).post(url, body, format="json")
    assert (too_long.status_code, too_long.data["fields"]) == (
        400,
        {"expires_at": ["T1 exceptions last at most 30 days (policy v1)"]},
    )
    body["expires_at"] = (timezone.now() + timedelta(days=30)).isoformat()
    assert api(owner).post(url, body, format="json").status_code == 403
    granted = api(risk_officer).post(url, body, format="json")
    assert granted.status_code == 201, granted.data
    assert (granted.data["approver"], granted.data["policy"]["tier"]) == ("risk", 1)
    assert [e["id"] for e in api(developer).get(url).data] == [granted.data["id"]]
    assert AuditEvent.objects.get(action="exception.granted").reason == "regulatory deadline"


def test_a_conditions_owner_marks_it_met(api, developer, owner, risk_officer):
    _, request = submitted(developer, owner, 4)
    services.decision_record(
        actor=risk_officer,
        request=request,
        outcome="approve_with_conditions",
        comment="monitor",
        conditions=[services.ConditionIn("monthly report", owner, timezone.localdate() + timedelta(days=5))],
    )
    condition = request.conditions.get()
    url = f"/api/v1/conditions/{condition.pk}/close/"
    waived = api(owner).post(url, {"state": "waived", "note": "no"}, format="json")
    assert (waived.status_code, waived.data["message"]) == (403, "Only a risk officer waives a condition.")
    met = api(owner).post(url, {"state": "met", "note": "first report filed"}, format="json")
    assert (met.status_code, met.data["state"]) == (200, "met")
    again = api(owner).post(url, {"state": "met", "note": "again"}, format="json")
    assert again.status_code == 409


def test_a_validator_raises_a_finding_that_deciders_then_read_on_the_request_page(
    api, developer, owner, validator, risk_officer
):
    _, request = submitted(developer, owner, 4)
    url = f"/api/v1/models/{request.model.name}/findings/"
    body = {
        "title": "Unstable on thin files",
        "severity": "high",
        "owner": "owner",
        "due_date": str(timezone.localdate() + timedelta(days=30)),
        "version": 1,
    }
    denied = api(developer).post(url, body, format="json")
    assert denied.status_code == 403 and denied.data["message"].startswith("Only validators, risk officers")
    raised = api(validator).post(url, body, format="json")
    assert raised.status_code == 201, raised.data
    assert (raised.data["severity"], raised.data["version"], raised.data["state"]) == ("high", 1, "open")
    assert [f["title"] for f in api(developer).get(url).data] == ["Unstable on thin files"]
    assert AuditEvent.objects.get(action="finding.raised").after["owner"] == "owner"
    no_such = api(validator).post(url, {**body, "version": 9}, format="json")
    assert no_such.status_code == 400
    assert no_such.data["fields"] == {"version": [f"{request.model.name} has no version 9"]}

    client = Client()
    risk_officer.is_staff = True
    risk_officer.save()
    client.force_login(risk_officer)
    page = client.get(f"/admin/governance/approvalrequest/{request.pk}/change/")
    assert b"Unstable on thin files" in page.content


def test_the_api_schema_documents_each_version_action_with_its_own_summary_and_body(db):
    """The views made from one class (suspend and deprecate; the lifecycle requests) each keep
    their own documentation: the API's readers see what each endpoint does and takes."""
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    version = "/api/v1/models/{model_name}/versions/{number}"

    def documented(path: str) -> tuple[str, str]:
        post = paths[path]["post"]
        return post["summary"], post["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]

    assert documented(f"{version}/suspend/")[0].startswith("Suspend a version at once")
    assert documented(f"{version}/deprecate/")[0].startswith("Deprecate a version deployed nowhere")
    assert documented(f"{version}/revalidation/") == (
        "Ask for a revalidation of an approved version",
        "LifecycleRequestInRequest",
    )
    assert documented(f"{version}/reinstatement/") == (
        "Ask to lift a version's suspension",
        "LifecycleRequestInRequest",
    )
    assert documented(f"{version}/decommission/") == ("Ask to decommission a version", "DecommissionInRequest")
