"""tune_collector: what start-up made is frozen, and the thresholds are left alone."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from natsbus.collector import tune_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_start_up_is_frozen_and_the_thresholds_kept() -> None:
    gc.set_threshold(700, 10, 10)
    made_at_start_up = [object() for _ in range(10)]
    tune_collector()
    assert gc.get_freeze_count() >= len(made_at_start_up)
    assert gc.get_threshold() == (700, 10, 10)
