"""Every list endpoint costs the same number of queries whatever the page size."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry import services
from tests.factories import make_dataset_version, make_model, make_version

ROWS = 110
LISTS = [
    "/api/v1/models/",
    "/api/v1/models/big/versions/",
    "/api/v1/versions/",
    "/api/v1/datasets/",
    "/api/v1/datasets/big-data/versions/",
    "/api/v1/dataset-versions/",
    "/api/v1/tokens/",
    "/api/v1/audit-events/",
    "/api/v1/models/big/history/",
]


@pytest.fixture
def crowded_registry(developer):
    big = make_model(developer, name="big", tags={"k": "v"})
    previous = None
    for _ in range(ROWS):
        used = make_dataset_version(developer, name="big-data")
        previous = make_version(
            developer,
            big,
            parents=[(previous, "retrained_from")] if previous else [],
            datasets=[(used, "training")],
            tags={"t": "x"},
        )
        make_model(developer)
        make_dataset_version(developer)
        services.token_create(actor=developer, name=f"token-{previous.number}")


@pytest.mark.parametrize("url", LISTS)
def test_a_page_of_100_costs_the_same_queries_as_a_page_of_10(api, developer, crowded_registry, url):
    client = api(developer)
    client.get(f"{url}?page_size=1")  # the connection prepares its statements once (common.statements)
    counts = {}
    for size in (10, 100):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"{url}?page_size={size}")
        assert response.status_code == 200, response.data
        assert len(response.data["results"]) == size
        counts[size] = len(queries)
    assert counts[10] == counts[100], counts
    assert counts[10] <= 6, counts
