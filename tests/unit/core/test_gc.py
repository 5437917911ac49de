"""A started worker freezes its start-up objects and collects young objects less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from orchestrator._gc import YOUNG_THRESHOLD, tune_for_worker


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector")
def test_start_up_objects_are_frozen_and_young_collections_spaced() -> None:
    gc.set_threshold(700, 10, 10)
    alive = [[1], {"a": [2]}]
    assert any(o is alive for o in gc.get_objects())
    tune_for_worker()
    # frozen: no collection walks it again (the collector lists only what it walks)
    assert not any(o is alive for o in gc.get_objects())
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert gc.isenabled()


@pytest.mark.usefixtures("collector")
def test_a_higher_threshold_or_a_collector_switched_off_is_left_alone() -> None:
    gc.set_threshold(50_000, 5, 5)
    tune_for_worker()
    assert gc.get_threshold() == (50_000, 5, 5)
    gc.set_threshold(0)
    tune_for_worker()
    assert gc.get_threshold()[0] == 0
