from __future__ import annotations

from django.test import Client

from audit.models import AuditEvent
from tests.factories import UserFactory, make_model, make_version


def test_audit_events_are_read_only_in_the_admin_even_for_superusers(developer):
    make_model(developer, name="m1")
    event = AuditEvent.objects.get()
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    assert client.get("/admin/audit/auditevent/").status_code == 200
    page = client.get(f"/admin/audit/auditevent/{event.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    assert client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_risk_officer_browses_the_registry_in_the_admin(developer, risk_officer):
    model = make_model(developer, name="m1", restricted=True)
    make_version(developer, model)
    client = Client()
    client.force_login(risk_officer)
    for url in ["/admin/", "/admin/registry/registeredmodel/", f"/admin/registry/registeredmodel/{model.pk}/change/"]:
        response = client.get(url)
        assert response.status_code == 200, url
    assert b"m1" in client.get("/admin/registry/registeredmodel/").content


def test_a_model_edited_in_the_admin_goes_through_the_service_and_is_audited(owner):
    owner.is_staff = True
    owner.save()
    model = make_model(owner, name="m1")
    client = Client()
    client.force_login(owner)
    page = client.get(f"/admin/registry/registeredmodel/{model.pk}/change/")
    form = page.context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data.update(
        {
            "description": "edited in the admin",
            "tags": "{}",
            "owner": owner.pk,
            "team": model.team_id,
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
        }
    )
    response = client.post(f"/admin/registry/registeredmodel/{model.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    event = AuditEvent.objects.get(action="model.updated")
    assert event.after == {"description": "edited in the admin"}
