"""Settings that cannot work stop `lmx_serve` before it binds a port, with one line naming them."""

import os
import subprocess
import sys

import pytest

from tests.lmx_server import ROOT


@pytest.mark.parametrize(
    "name,value,says",
    [
        ("LMX_PREFILL_BUCKETS", "sometimes", "LMX_PREFILL_BUCKETS must be auto, on or off, not 'sometimes'"),
        ("LMX_BATCH_LAYERS", "maybe", "LMX_BATCH_LAYERS must be auto, on or off, not 'maybe'"),
        ("LMX_SHORT_ATTENTION", "fast", "LMX_SHORT_ATTENTION must be auto, on or off, not 'fast'"),
        ("LMX_MIXED_ROUNDS", "auto", "LMX_MIXED_ROUNDS must be on or off, not 'auto'"),
        ("LMX_MAX_CONCURRENT", "0", "LMX_MAX_CONCURRENT must be >= 1 and LMX_MAX_QUEUE >= 0"),
    ],
)
def test_a_bad_setting_stops_the_server_at_start_with_one_clear_line(name, value, says, tmp_path):
    env = {**os.environ, name: value, "LMX_DATA_DIR": str(tmp_path), "LMX_DEFAULT_MODEL": ""}
    done = subprocess.run(
        [sys.executable, "manage.py", "lmx_serve", "--port", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"CommandError: {says}"
