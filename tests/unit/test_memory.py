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
