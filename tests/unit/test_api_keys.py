"""lmx_site.api_keys: which requests open /v1/* (the server-level behaviour is in
tests/e2e/test_api_keys.py)."""

import pytest

from lmx_site import api_keys


def scope(**headers) -> dict:
    return {"headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}


@pytest.fixture
def keyed(settings):
    settings.LMX_ADMIN_TOKEN = ""
    return settings


def test_no_keys_leave_the_routes_open(keyed):
    keyed.LMX_API_KEYS = ""
    assert api_keys.key_ok(scope())


def test_either_header_carries_a_key_and_an_empty_one_never_matches(keyed):
    keyed.LMX_API_KEYS = "sk-a, sk-b"
    assert api_keys.key_ok(scope(authorization="Bearer sk-b"))
    assert api_keys.key_ok(scope(x_api_key="sk-a"))
    assert not api_keys.key_ok(scope(authorization="Basic sk-a"))
    assert not api_keys.key_ok(scope(authorization="Bearer "))
    assert not api_keys.key_ok(scope())


def test_a_key_file_that_disappears_opens_nothing(keyed, tmp_path):
    """Its path must not become a key, nor the routes open, when the file is gone."""
    path = tmp_path / "keys.txt"
    path.write_text("sk-file\n")
    keyed.LMX_API_KEYS = str(path)
    assert api_keys.key_ok(scope(authorization="Bearer sk-file"))
    path.unlink()
    assert not api_keys.key_ok(scope(authorization="Bearer sk-file"))
    assert not api_keys.key_ok(scope(authorization=f"Bearer {path}"))
    assert not api_keys.key_ok(scope())


def test_an_empty_key_file_opens_nothing_but_the_admin_token_does(keyed, tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text("# no keys yet\n")
    keyed.LMX_API_KEYS = str(path)
    assert not api_keys.key_ok(scope(authorization="Bearer "))
    keyed.LMX_ADMIN_TOKEN = "operator"
    assert api_keys.key_ok(scope(authorization="Bearer operator"))
