"""The risk officers' console in the Django admin, as each person sees it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from common.errors import TRY_AGAIN, Conflict
from common.roles import Role
from governance import services
from governance.models import ApprovalPolicy, RequestState
from registry.models import VersionState
from tests.concurrency import a_deadlock
from tests.conftest import on_postgres
from tests.factories import UserFactory, submitted


def signed_in(user) -> Client:
    user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


def page_url(request) -> str:
    return f"/admin/governance/approvalrequest/{request.pk}/change/"


def in_queue(client, request) -> bool:
    page = client.get("/admin/governance/awaitingdecision/")
    assert page.status_code == 200
    return f'href="/admin/governance/awaitingdecision/{request.pk}/change/'.encode() in page.content


def test_a_risk_officer_finds_the_request_in_the_queue_and_approves_it_with_a_comment(developer, owner, risk_officer):
    version, request = submitted(developer, owner, 4)
    client = signed_in(risk_officer)
    assert in_queue(client, request)

    page = client.get(page_url(request))
    assert page.status_code == 200
    for evidence in (version.artifact_sha256, "Risk officer acknowledgement", "T4 approval policy, version 1"):
        assert evidence.encode() in page.content
    assert b"Record my decision" in page.content

    response = client.post(
        page_url(request),
        {
            "outcome": "approve",
            "comment": "acknowledged",
            "conditions-TOTAL_FORMS": "3",
            "conditions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.state == VersionState.APPROVED
    assert AuditEvent.objects.get(action="decision.recorded").reason == "acknowledged"
    assert not in_queue(client, request)


def test_the_submitter_and_the_developer_see_why_they_cannot_decide_and_no_form(developer, owner):
    _, request = submitted(developer, owner, 4)
    for user, reason in [
        (owner, "You cannot approve: you submitted this version."),
        (developer, "You cannot approve: you created this version."),
    ]:
        client = signed_in(user)
        page = client.get(page_url(request))
        assert reason.encode() in page.content
        assert b"Record my decision" not in page.content
        refused = client.post(page_url(request), {"outcome": "approve", "conditions-TOTAL_FORMS": "0"})
        assert refused.status_code == 200
        assert not request.decisions.exists()
        assert not in_queue(client, request)


def test_a_refusal_from_the_service_shows_on_the_page_and_writes_nothing(developer, owner, risk_officer):
    _, request = submitted(developer, owner, 4)
    client = signed_in(risk_officer)
    response = client.post(
        page_url(request),
        {"outcome": "reject", "comment": "", "conditions-TOTAL_FORMS": "3", "conditions-INITIAL_FORMS": "0"},
        follow=True,
    )
    assert b"Comment: is required" in response.content
    assert not request.decisions.exists()


def test_an_approval_with_conditions_from_the_admin_creates_them(developer, owner, risk_officer):
    _, request = submitted(developer, owner, 4)
    client = signed_in(risk_officer)
    due = (timezone.localdate() + timedelta(days=20)).isoformat()
    client.post(
        page_url(request),
        {
            "outcome": "approve_with_conditions",
            "comment": "with a monitoring plan",
            "conditions-TOTAL_FORMS": "3",
            "conditions-INITIAL_FORMS": "0",
            "conditions-0-description": "Monthly PSI report",
            "conditions-0-owner": "owner",
            "conditions-0-due_date": due,
        },
    )
    request.refresh_from_db()
    assert request.state == RequestState.APPROVED
    assert [(c.description, c.owner.username) for c in request.conditions.all()] == [("Monthly PSI report", "owner")]


def test_a_request_page_for_an_id_that_is_not_a_number_redirects_with_a_message(risk_officer):
    client = signed_in(risk_officer)
    for bad in ("%C2%B2", "99999999999999999999", "abc"):
        response = client.get(f"/admin/governance/approvalrequest/{bad}/change/", follow=True)
        assert response.status_code == 200
        assert b"No approval request" in response.content


def test_state_fields_are_read_only_everywhere_in_the_admin(developer, owner, risk_officer):
    version, request = submitted(developer, owner, 4)
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = signed_in(root)
    form = client.get(f"/admin/registry/modelversion/{version.pk}/change/")
    assert form.status_code == 200
    assert b'name="state"' not in form.content
    page = client.get(page_url(request))
    assert b'name="state"' not in page.content
    assert client.get("/admin/governance/approvalrequest/add/").status_code == 403


def test_a_request_page_with_twenty_earlier_decisions_costs_a_fixed_number_of_queries(
    developer, owner, risk_officer, django_assert_max_num_queries
):
    members = [UserFactory(username=f"member{i}", groups=[Role.COMMITTEE_MEMBER]) for i in range(20)]
    draft = services.policy_draft(actor=risk_officer, tier=4)
    stage = {**draft.stages[0], "name": "Committee", "role": Role.COMMITTEE_MEMBER.value, "quorum": 20}
    services.document_update(actor=risk_officer, document=draft, changes={"stages": [stage]})
    services.document_publish(actor=risk_officer, document=draft)
    _, earlier = submitted(developer, owner, 4)
    _, request = submitted(developer, owner, 4)
    client = signed_in(risk_officer)
    client.get(page_url(request))  # warm the session and content types

    def measure():
        with django_assert_max_num_queries(100) as counted:
            assert client.get(page_url(request)).status_code == 200
        return len(counted.captured_queries)

    services.decision_record(actor=members[0], request=request, outcome="approve")
    services.decision_record(actor=members[0], request=earlier, outcome="approve")
    one = measure()
    for person in members[1:]:
        services.decision_record(actor=person, request=request, outcome="approve")
        services.decision_record(actor=person, request=earlier, outcome="approve")
    assert request.decisions.count() == 20 and earlier.decisions.count() == 20
    assert measure() == one


def test_the_dashboard_counts_models_requests_and_what_is_overdue(developer, owner, risk_officer):
    _, request = submitted(developer, owner, 2)
    request.stages.filter(state="active").update(due_at=timezone.now() - timedelta(days=1))
    client = signed_in(risk_officer)
    page = client.get("/admin/governance/approvalrequest/dashboard/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Overdue stages" in text and f"#{request.pk}" in text
    assert "Independent validation (Validators)" in text
    assert "Approvals in flight" in text


def test_a_draft_older_than_the_published_version_is_not_published_over_it(risk_officer, risk_officer_2):
    """Two officers draft the same tier; the second publishes first. The first draft would undo
    the second's changes: it is refused, and the second stays in force."""
    first = services.policy_draft(actor=risk_officer, tier=3)
    second = services.policy_draft(actor=risk_officer_2, tier=3)
    services.document_publish(actor=risk_officer_2, document=second)

    with pytest.raises(Conflict, match=r"was published after .* was drafted: draft again from it"):
        services.document_publish(actor=risk_officer, document=first)

    assert ApprovalPolicy.objects.get(tier=3, status="published").pk == second.pk
    first.refresh_from_db()
    assert first.status == "draft"

    # and in the other order: both drafted from the same version, the later draft published last
    third, fourth = (services.policy_draft(actor=officer, tier=3) for officer in (risk_officer, risk_officer_2))
    services.document_publish(actor=risk_officer, document=third)
    with pytest.raises(Conflict, match=r"was published after .* was drafted"):
        services.document_publish(actor=risk_officer_2, document=fourth)
    assert ApprovalPolicy.objects.get(tier=3, status="published").pk == third.pk


def test_publishing_a_selection_names_each_refusal_and_publishes_the_rest(risk_officer):
    published_t2 = ApprovalPolicy.objects.get(tier=2, status="published")  # listed before the T3 draft
    draft_t3 = services.policy_draft(actor=risk_officer, tier=3)
    client = signed_in(risk_officer)

    response = client.post(
        "/admin/governance/approvalpolicy/",
        {"action": "publish", "_selected_action": [published_t2.pk, draft_t3.pk]},
        follow=True,
    )

    draft_t3.refresh_from_db()
    said = [str(m) for m in response.context["messages"]]
    assert said == [
        f"{published_t2}: {published_t2} is published: only a draft is published.",
        f"{draft_t3}: published.",
    ]
    assert draft_t3.status == "published"


def test_a_risk_officer_drafts_and_publishes_a_policy_in_the_admin_and_published_ones_stay_read_only(
    risk_officer, developer
):
    client = signed_in(risk_officer)
    published = ApprovalPolicy.objects.get(tier=3, status="published")
    edit = client.get(f"/admin/governance/approvalpolicy/{published.pk}/change/")
    assert b'name="stages"' not in edit.content
    client.post(
        "/admin/governance/approvalpolicy/",
        {"action": "draft_new_version", "_selected_action": [published.pk]},
    )
    draft = ApprovalPolicy.objects.get(tier=3, status="draft")
    assert b'name="stages"' in client.get(f"/admin/governance/approvalpolicy/{draft.pk}/change/").content
    stages = [{**stage, "sla_business_days": 7} for stage in draft.stages]
    saved = client.post(
        f"/admin/governance/approvalpolicy/{draft.pk}/change/",
        {
            "stages": json.dumps(stages),
            "min_distinct_people": 3,
            "revalidation_months": 30,
            "max_exception_days": 90,
            "monitoring": json.dumps(draft.monitoring),
            "notes": "faster reviews",
        },
    )
    assert saved.status_code == 302
    draft.refresh_from_db()
    assert (draft.revalidation_months, draft.stages[0]["sla_business_days"]) == (30, 7)
    edit = AuditEvent.objects.get(action="approvalpolicy.draft_updated")
    assert edit.after["revalidation_months"] == 30 and edit.before["revalidation_months"] == 36
    client.post("/admin/governance/approvalpolicy/", {"action": "publish", "_selected_action": [draft.pk]})
    draft.refresh_from_db()
    published.refresh_from_db()
    assert (draft.status, published.status) == ("published", "superseded")
    assert AuditEvent.objects.filter(action="approvalpolicy.published", object_id=str(draft.pk)).exists()

    dev = signed_in(developer)
    assert dev.get(f"/admin/governance/approvalpolicy/{draft.pk}/change/").status_code == 200
    assert b'name="stages"' not in dev.get(f"/admin/governance/approvalpolicy/{draft.pk}/change/").content


@pytest.mark.skipif(not on_postgres(), reason="PostgreSQL's deadlock detection")
@pytest.mark.django_db(transaction=True)
def test_a_decision_rolled_back_for_a_deadlock_shows_on_the_page_to_send_again(
    developer, owner, risk_officer, monkeypatch
):
    version, request = submitted(developer, owner, 4)
    deadlock = a_deadlock(developer, owner)

    def rolled_back(**kwargs: Any) -> None:
        raise deadlock

    monkeypatch.setattr(services, "decision_record", rolled_back)
    client = signed_in(risk_officer)
    answer = client.post(
        page_url(request),
        {"outcome": "approve", "conditions-TOTAL_FORMS": "0", "conditions-INITIAL_FORMS": "0"},
        follow=True,
    )
    assert answer.redirect_chain == [(page_url(request), 302)]
    assert [str(m) for m in answer.context["messages"]] == [TRY_AGAIN]
    assert b"Record my decision" in answer.content
    version.refresh_from_db()
    assert (version.state, request.decisions.count()) == (VersionState.SUBMITTED, 0)


def test_a_request_the_gate_does_not_weigh_is_decided_without_conditions_on_offer(developer, owner, risk_officer):
    """A reinstatement takes no conditions: the page offers neither the outcome nor the form."""
    version, request = submitted(developer, owner, 4)
    services.decision_record(actor=risk_officer, request=request, outcome="approve")
    services.version_suspend(actor=risk_officer, version=version, reason="drift")
    reinstatement = services.request_open(
        actor=owner, kind="reinstatement", model=version.model, version=version, rationale="feed fixed"
    )
    client = signed_in(UserFactory(username="risk-2", groups=[Role.RISK_OFFICER]))

    page = client.get(page_url(reinstatement))
    assert page.status_code == 200
    assert b"Record my decision" in page.content
    assert b"approve_with_conditions" not in page.content and b"conditions-TOTAL_FORMS" not in page.content
    response = client.post(page_url(reinstatement), {"outcome": "approve", "comment": "fixed"})
    assert response.status_code == 302
    reinstatement.refresh_from_db()
    assert reinstatement.state == RequestState.APPROVED


def test_the_page_signs_the_stage_it_showed_not_the_one_the_request_moved_on_to(
    developer, owner, assigned_validator, compliance, risk_officer, committee
):
    both = UserFactory(username="ro-and-committee", groups=[Role.RISK_OFFICER, Role.COMMITTEE_MEMBER], is_staff=True)
    _, request = submitted(developer, owner, 1)
    services.decision_record(actor=assigned_validator, request=request, outcome="approve")
    services.decision_record(actor=compliance, request=request, outcome="approve")
    client = signed_in(both)
    page = client.get(page_url(request))
    assert b'type="hidden" name="stage" value="Risk officer"' in page.content

    services.decision_record(actor=risk_officer, request=request, outcome="approve")  # meanwhile
    answer = client.post(
        page_url(request),
        {
            "outcome": "approve",
            "comment": "",
            "stage": "Risk officer",
            "conditions-TOTAL_FORMS": "3",
            "conditions-INITIAL_FORMS": "0",
        },
    )

    assert answer.status_code == 302  # the page again, drawn as the request stands now
    again = client.get(answer["Location"])
    assert [str(m) for m in again.context["messages"]] == [
        "stage: Risk officer is complete now; the request awaits Model risk committee"
    ]
    assert b'type="hidden" name="stage" value="Model risk committee"' in again.content
    assert not request.decisions.filter(person=both).exists()
