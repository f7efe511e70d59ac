from __future__ import annotations

import itertools

import pytest

from common.errors import Conflict
from governance import workflow
from governance.models import RequestState
from registry.models import VersionState

VERSION_PAIRS = list(itertools.product(VersionState.values, repeat=2))
REQUEST_PAIRS = list(itertools.product(RequestState.values, repeat=2))


def test_every_state_has_a_row_in_its_table():
    assert set(workflow.VERSION_TRANSITIONS) == set(VersionState.values)
    assert set(workflow.REQUEST_TRANSITIONS) == set(RequestState.values)


@pytest.mark.parametrize(("current", "target"), VERSION_PAIRS)
def test_version_move_is_allowed_exactly_when_the_table_says(current, target):
    if target in workflow.VERSION_TRANSITIONS[current]:
        workflow.ensure_version_transition("Version 1 of m", current, target)
        return
    with pytest.raises(Conflict) as refused:
        workflow.ensure_version_transition("Version 1 of m", current, target)
    assert refused.value.status == 409
    assert refused.value.message.startswith(f"Version 1 of m is {current}; it cannot become {target}")


@pytest.mark.parametrize(("current", "target"), REQUEST_PAIRS)
def test_request_move_is_allowed_exactly_when_the_table_says(current, target):
    if target in workflow.REQUEST_TRANSITIONS[current]:
        workflow.ensure_request_transition("Request #1", current, target)
        return
    with pytest.raises(Conflict) as refused:
        workflow.ensure_request_transition("Request #1", current, target)
    assert refused.value.status == 409
    assert f"Request #1 is {current}; it cannot become {target}" in refused.value.message


def test_the_lifecycle_of_product_md_is_in_the_table():
    t = workflow.VERSION_TRANSITIONS
    assert set(t["draft"]) == {"submitted"}
    assert set(t["submitted"]) == {"approved", "rejected", "changes_requested", "draft"}
    assert "deployed" in t["approved"] and "suspended" in t["deployed"]
    assert set(t["deprecated"]) == {"decommissioned"} and not t["decommissioned"]
