"""Memory thresholds: a run-time change is kept across restarts, until the settings change."""

import pytest

from inference import memory


@pytest.fixture
def fresh(settings, tmp_path, monkeypatch):
    settings.DATA_DIR = str(tmp_path)
    settings.LMX_MEMORY_WARNING_PCT, settings.LMX_MEMORY_CRITICAL_PCT = 85, 90
    monkeypatch.setattr(memory, "_override", None)  # as a process that just started
    return settings


def test_a_run_time_change_survives_a_restart(fresh, monkeypatch):
    assert memory.thresholds() == (85.0, 90.0)
    memory.set_thresholds(warning=70.0, critical=80.0)
    assert memory.thresholds() == (70.0, 80.0)
    monkeypatch.setattr(memory, "_override", None)  # restarted: read back from the data dir
    assert memory.thresholds() == (70.0, 80.0)


def test_a_changed_configuration_wins_over_an_older_run_time_change(fresh, monkeypatch):
    memory.set_thresholds(warning=70.0, critical=80.0)
    fresh.LMX_MEMORY_WARNING_PCT, fresh.LMX_MEMORY_CRITICAL_PCT = 60, 95
    monkeypatch.setattr(memory, "_override", None)
    assert memory.thresholds() == (60.0, 95.0)


def test_an_unreadable_file_falls_back_to_the_settings(fresh, tmp_path):
    (tmp_path / memory.FILE_NAME).write_text("{not json")
    assert memory.thresholds() == (85.0, 90.0)


def test_a_distributed_group_is_as_full_as_its_fullest_rank(monkeypatch):
    from types import SimpleNamespace

    from inference.wire import MemoryFigures

    figures = MemoryFigures(active=1_000_000_000, total=10_000_000_000, ranks=(1_000_000_000, 9_000_000_000))
    monkeypatch.setattr(memory, "get_engine", lambda: SimpleNamespace(memory=figures))
    monkeypatch.setattr(memory, "engine_rss", lambda: 0)
    snap = memory.snapshot()
    assert snap["active_gb"] == 9.0 and snap["ranks_active_gb"] == [1.0, 9.0]
    assert memory.used_pct(snap) == 90.0  # the guardian's critical threshold, by rank 1 alone
    alone = MemoryFigures(active=1_000_000_000, total=10_000_000_000)
    monkeypatch.setattr(memory, "get_engine", lambda: SimpleNamespace(memory=alone))
    assert memory.snapshot()["active_gb"] == 1.0 and "ranks_active_gb" not in memory.snapshot()
