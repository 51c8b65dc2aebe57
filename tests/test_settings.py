"""Settings: validated once, errors that name the variable, documented in the README."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from kitchencam.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_and_parsing() -> None:
    s = load_settings(
        {
            "KITCHENCAM_ALLOW_NETWORKS": "192.168.10.0/24, fd00::/8",
            "KITCHENCAM_LOG_LEVEL": "debug",
            "PATH": "/usr/bin",
        }
    )
    assert s.port == 8080 and s.redis_url is None and s.data_dir == Path("kitchencam-data")
    assert s.allow_networks == [
        ipaddress.ip_network("192.168.10.0/24"),
        ipaddress.ip_network("fd00::/8"),
    ]
    assert s.log_level == "DEBUG"


def test_secrets_stay_hidden() -> None:
    s = load_settings({"KITCHENCAM_REDIS_URL": "redis://:hunter2@db.internal:6379/0"})
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    assert s.redis_url is not None and "hunter2" in s.redis_url.get_secret_value()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KITCHENCAM_PORT": "70000"}, "KITCHENCAM_PORT: Input should be less than or equal"),
        ({"KITCHENCAM_LOG_FORMAT": "xml"}, "KITCHENCAM_LOG_FORMAT"),
        ({"KITCHENCAM_INSTANCE": "a b"}, "KITCHENCAM_INSTANCE"),
        ({"KITCHENCAM_SECRET_KEY": "not-a-key"}, "kitchencam gen-key"),
        ({"KITCHENCAM_REDIS": "redis://x"}, "unknown setting KITCHENCAM_REDIS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_settings(env)


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`KITCHENCAM_{name.upper()}`" in readme, name
