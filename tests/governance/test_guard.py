"""The bypass guard on governance's tables (PostgreSQL): decisions and request states change
only with their audit event."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from governance import services
from governance.models import ApprovalRequest, Decision
from tests.conftest import on_postgres
from tests.factories import submitted

pytestmark = [
    pytest.mark.skipif(not on_postgres(), reason="the guard is PostgreSQL's constraint triggers"),
    pytest.mark.django_db(transaction=True),
]


def test_approving_a_request_with_an_update_fails_at_commit(developer, owner):
    _, request = submitted(developer, owner, 4)
    refused = pytest.raises(
        DatabaseError, match=r"governance\.approvalrequest \d+ was written .* without an audit event"
    )
    with refused, transaction.atomic():
        ApprovalRequest.objects.filter(pk=request.pk).update(state="approved")
    assert ApprovalRequest.objects.get(pk=request.pk).state == "open"


def test_a_decision_inserted_outside_the_services_fails_at_commit(developer, owner, risk_officer):
    _, request = submitted(developer, owner, 4)
    refused = pytest.raises(DatabaseError, match=r"governance\.decision \d+ was written .* without an audit event")
    with refused, transaction.atomic():
        Decision.objects.create(request=request, stage=request.stages.get(), person=risk_officer, outcome="approve")
    assert not Decision.objects.exists()


def test_the_services_satisfy_the_guard(developer, owner, risk_officer):
    _, request = submitted(developer, owner, 4)
    with transaction.atomic():
        services.decision_record(actor=risk_officer, request=request, outcome="approve")
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert ApprovalRequest.objects.get(pk=request.pk).state == "approved"
