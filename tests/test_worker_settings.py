"""A worker's settings for super-resolution, checked before anything starts: heartbeats that fit their timeout,
a tile time longer than a heartbeat, SR processes sized by the cores it may use, and a warning when a tile
measured at start-up leaves too little room under SR_TILE_SECONDS."""

import logging
import os

import pytest
from pydantic import ValidationError

from core.config import HEARTBEATS_PER_TIMEOUT, Settings, available_cores
from services.batches import super_resolution_processes
from worker import start_sr_processes


def test_a_heartbeat_timeout_shorter_than_a_few_intervals_is_refused() -> None:
    with pytest.raises(ValidationError, match=f"at least {HEARTBEATS_PER_TIMEOUT} x ACTIVITY_HEARTBEAT_INTERVAL"):
        Settings(_env_file=None, activity_heartbeat_timeout_seconds=1.5, activity_heartbeat_interval_seconds=0.5)
    assert Settings(_env_file=None, activity_heartbeat_timeout_seconds=2, activity_heartbeat_interval_seconds=0.5)


def test_a_tile_time_within_a_heartbeat_interval_is_refused() -> None:
    with pytest.raises(ValidationError, match="SR_TILE_SECONDS must be longer"):
        Settings(_env_file=None, sr_tile_seconds=0.5)


def test_sr_processes_default_to_the_cores_this_process_may_use() -> None:
    cores = available_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    assert Settings(_env_file=None).sr_processes == cores


def test_no_sr_processes_where_the_network_never_runs() -> None:
    assert super_resolution_processes(Settings(_env_file=None, enhance_engine="classic")) is None


@pytest.mark.usefixtures("sr_runtime")
def test_a_slow_first_tile_is_reported_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    # A 512-px tile takes about 16 times a default one: well over a fifth of a 1-second SR_TILE_SECONDS.
    settings = Settings(_env_file=None, enhance_engine="sr", sr_processes=1, sr_tile_size=512, sr_tile_seconds=1.0)
    processes = super_resolution_processes(settings)
    assert processes is not None
    try:
        with caplog.at_level(logging.WARNING, logger="worker"):
            start_sr_processes(processes, settings)
        assert len(processes.pids()) == 1
    finally:
        processes.close()
    assert any("raise SR_TILE_SECONDS or lower SR_TILE_SIZE" in record.message for record in caplog.records)
