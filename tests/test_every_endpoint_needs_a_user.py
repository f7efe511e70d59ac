"""Every operation of the API, read from its own OpenAPI schema, refuses an anonymous caller
with 401 in the error shape."""

from __future__ import annotations

import re

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

SAMPLE = {
    "name": "m1",
    "model_name": "m1",
    "dataset_name": "d1",
    "number": "1",
    "id": "1",
    "seq": "1",
    "key": "k",
    "alias": "a",
}


def operations() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (method.upper(), re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path))
        for path, methods in schema["paths"].items()
        for method in methods
    ]


@pytest.mark.parametrize("method, url", operations())
def test_anonymous_callers_are_refused_with_401(db, method, url):
    response = APIClient().generic(method, url, "{}", content_type="application/json")
    assert response.status_code == 401, response.content
    assert response.json()["code"] == "not_authenticated"
