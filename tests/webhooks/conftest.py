"""Each webhook test leaves no delivery PENDING on the shared database (see end_pending_deliveries)."""

from collections.abc import Iterator

import pytest

from tests.conftest import engine_for
from tests.db_helpers import end_pending_deliveries


@pytest.fixture(autouse=True)
def no_delivery_left_pending(primary_db_url: str) -> Iterator[None]:
    yield
    end_pending_deliveries(engine_for(primary_db_url))
