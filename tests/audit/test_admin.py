from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.test import Client

from audit.models import AuditEvent
from common.roles import Role
from registry import services
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


def _page_data(client: Client, url: str) -> dict:
    """What a browser sends back from the page unchanged: each field and the value it showed."""
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data = {
        name: "" if value is None else json.dumps(value) if isinstance(value, dict) else value
        for name, value in data.items()
    }
    return data | {f"initial-{name}": value for name, value in data.items()}


def test_saving_an_admin_page_keeps_the_tags_and_description_changed_elsewhere_since_it_was_opened(developer):
    developer.is_staff = True
    developer.save()
    model = make_model(developer, name="m1", tags={"area": "retail", "old": "x"})
    version = make_version(developer, model, tags={"stage": "dev", "old": "x"})
    client = Client()
    client.force_login(developer)
    model_url = f"/admin/registry/registeredmodel/{model.pk}/change/"
    version_url = f"/admin/registry/modelversion/{version.pk}/change/"
    model_page, version_page = _page_data(client, model_url), _page_data(client, version_url)

    # meanwhile, through the API or the mlflow client
    services.model_update(actor=developer, model=model, set_tags={"qa": "passed"}, delete_tags=["old"])
    services.version_update(actor=developer, version=version, description="from CI", set_tags={"qa": "passed"})

    model_page |= {"tags": json.dumps({"area": "wholesale", "old": "x"}), "versions-TOTAL_FORMS": "0"}
    model_page |= {"versions-INITIAL_FORMS": "0", "owner": developer.pk, "team": model.team_id}
    assert client.post(model_url, model_page).status_code == 302
    version_page |= {"tags": json.dumps({"stage": "dev"})}
    assert client.post(version_url, version_page).status_code == 302

    model.refresh_from_db()
    version.refresh_from_db()
    assert model.tags == {"area": "wholesale", "qa": "passed"}
    assert (version.tags, version.description) == ({"stage": "dev", "qa": "passed"}, "from CI")


def test_a_tag_removed_on_the_page_and_elsewhere_meanwhile_saves_the_rest(developer):
    developer.is_staff = True
    developer.save()
    version = make_version(developer, make_model(developer, name="m1"), tags={"a": "1", "b": "2"})
    client = Client()
    client.force_login(developer)
    url = f"/admin/registry/modelversion/{version.pk}/change/"
    page = _page_data(client, url)
    services.version_update(actor=developer, version=version, delete_tags=["b"])

    page |= {"tags": json.dumps({"a": "1"}), "description": "edited"}
    assert client.post(url, page).status_code == 302
    version.refresh_from_db()
    assert (version.tags, version.description) == ({"a": "1"}, "edited")


def test_a_page_sent_without_the_values_it_showed_is_compared_with_the_row_as_it_is(developer, owner):
    """A page opened before the values were carried, or a scripted post: what differs from the
    row is the change, as before; a team member who edits the description only is not taken to
    be changing the owner or the team, which only the owner may."""
    owner.is_staff = developer.is_staff = True
    owner.save()
    developer.save()
    model = make_model(owner, name="m1", tags={"area": "retail"})
    client = Client()
    client.force_login(developer)
    url = f"/admin/registry/registeredmodel/{model.pk}/change/"
    page = {name: value for name, value in _page_data(client, url).items() if not name.startswith("initial-")}
    page |= {
        "description": "edited",
        "tags": json.dumps({}),
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
    }

    assert client.post(url, page).status_code == 302
    model.refresh_from_db()
    assert (model.description, model.tags, model.owner) == ("edited", {}, owner)


def test_a_model_page_shows_its_versions_and_saves_for_a_superuser_on_the_team(developer):
    developer.is_staff = developer.is_superuser = True
    with transaction.atomic():
        developer.save()
    model = make_model(developer, name="m1")
    make_version(developer, model)
    client = Client()
    client.force_login(developer)
    url = f"/admin/registry/registeredmodel/{model.pk}/change/"
    page = client.get(url)
    assert [f.instance.number for f in page.context["inline_admin_formsets"][0].formset.forms] == [1]
    data = _page_data(client, url) | {"description": "edited", "owner": developer.pk, "team": model.team_id}
    data |= {"versions-TOTAL_FORMS": "1", "versions-INITIAL_FORMS": "1"}
    response = client.post(url, data)
    assert response.status_code == 302, response.content[:2000]
    assert AuditEvent.objects.get(action="model.updated").after == {"description": "edited"}


@pytest.mark.parametrize("tags", ['["x"]', '"x"', "[]", "0"])
def test_tags_that_are_not_an_object_are_refused_on_the_page(developer, tags):
    developer.is_staff = True
    with transaction.atomic():
        developer.save()
    model = make_model(developer, name="m1", tags={"area": "retail"})
    client = Client()
    client.force_login(developer)
    url = f"/admin/registry/registeredmodel/{model.pk}/change/"
    data = _page_data(client, url) | {"tags": tags, "owner": developer.pk, "team": model.team_id}
    data |= {"versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0"}
    response = client.post(url, data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["tags"] == [
        'Tags are an object of key: value strings, such as {"use": "pricing"}.'
    ]
    model.refresh_from_db()
    assert model.tags == {"area": "retail"}


def test_a_risk_officer_off_the_team_restricts_a_model_in_the_admin_as_the_api_lets_them(developer, risk_officer):
    model = make_model(developer, name="m1")
    client = Client()
    client.force_login(risk_officer)
    url = f"/admin/registry/registeredmodel/{model.pk}/change/"
    form = client.get(url).context["adminform"].form
    assert {"restricted", "owner", "team"} <= set(form.fields) and "description" not in form.fields
    data = _page_data(client, url) | {"restricted": "on", "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0"}
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    model.refresh_from_db()
    assert model.restricted is True
    assert AuditEvent.objects.get(action="model.updated").after == {"restricted": True}


def test_the_model_lists_team_filter_offers_the_teams_of_the_models_shown(developer, outsider):
    """Not every group: the role groups, and teams whose models are all hidden from the user, stay out."""
    Group.objects.create(name="retail")
    retailer = UserFactory(username="retailer", groups=[Role.MODEL_DEVELOPER, "retail"])
    make_model(developer, name="scoring")
    make_model(outsider, team="pricing", name="quotes")
    make_model(retailer, team="retail", name="secret", restricted=True)
    developer.is_staff = True
    with transaction.atomic():
        developer.save()
    client = Client()
    client.force_login(developer)
    changelist = client.get("/admin/registry/registeredmodel/").context["cl"]
    [teams] = [spec for spec in changelist.filter_specs if spec.field_path == "team"]
    assert sorted(name for _, name in teams.lookup_choices) == ["credit-risk", "pricing"]
