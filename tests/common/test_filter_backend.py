from __future__ import annotations

import django_filters
from django import forms

import audit.filters
import governance.filters
import registry.filters
from tests.factories import make_model, make_version


def test_every_filter_takes_one_parameter_of_its_own_name():
    # common.api.FilterBackend passes a list through unfiltered when no parameter names a
    # filter; a filter read from other parameters (a range's name_after, name_before) would
    # be skipped wrongly.
    filtersets = [
        value
        for module in (audit.filters, governance.filters, registry.filters)
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, django_filters.FilterSet)
        and value.__module__ == module.__name__
    ]
    assert len(filtersets) == 8
    for filterset in filtersets:
        for name, declared in filterset.base_filters.items():
            assert not isinstance(declared.field.widget, forms.MultiWidget), f"{filterset.__name__}.{name}"


def test_a_list_is_filtered_when_a_parameter_names_a_filter_and_whole_when_none_does(api, developer):
    model = make_model(developer, name="m1")
    make_version(developer, model)
    make_version(developer, model, framework="sklearn")
    url, client = "/api/v1/models/m1/versions/", api(developer)

    assert [v["number"] for v in client.get(url, {"framework": "sklearn"}).json()["results"]] == [2]
    assert sorted(v["number"] for v in client.get(url, {"page_size": 10}).json()["results"]) == [1, 2]
