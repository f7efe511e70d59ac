from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import env

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **environ}, capture_output=True, text=True
    )


def test_a_bad_boolean_names_the_variable(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG: expected true or false"):
        env.boolean("DEBUG", True)


def test_a_bad_integer_and_a_too_small_one_are_refused(monkeypatch):
    monkeypatch.setenv("LOGIN_FAILURE_LIMIT", "five")
    with pytest.raises(ImproperlyConfigured, match="LOGIN_FAILURE_LIMIT: expected a whole number"):
        env.integer("LOGIN_FAILURE_LIMIT", 5, minimum=1)
    monkeypatch.setenv("LOGIN_FAILURE_LIMIT", "0")
    with pytest.raises(ImproperlyConfigured, match="LOGIN_FAILURE_LIMIT: must be at least 1"):
        env.integer("LOGIN_FAILURE_LIMIT", 5, minimum=1)


def test_an_integer_above_its_maximum_is_refused(monkeypatch):
    monkeypatch.setenv("GATE_GRACE_DAYS", "100000")
    with pytest.raises(ImproperlyConfigured, match="GATE_GRACE_DAYS: must be at most 3650, got 100000"):
        env.integer("GATE_GRACE_DAYS", 0, maximum=3650)


def test_a_mapping_is_parsed_and_an_empty_one_keeps_the_default(monkeypatch):
    default = {"production": "production"}
    monkeypatch.setenv("PROTECTED_ALIASES", "production=production, live = staging")
    assert env.mapping("PROTECTED_ALIASES", default) == {"production": "production", "live": "staging"}
    monkeypatch.setenv("PROTECTED_ALIASES", " ")
    assert env.mapping("PROTECTED_ALIASES", default) == default
    monkeypatch.setenv("PROTECTED_ALIASES", "production")
    with pytest.raises(ImproperlyConfigured, match="PROTECTED_ALIASES: 'production' is not key=value"):
        env.mapping("PROTECTED_ALIASES", default)


def test_webhook_networks_are_checked_at_start_up(monkeypatch):
    monkeypatch.setenv("NOTIFY_WEBHOOK_ALLOWED_NETWORKS", "10.20.0.0/16, 127.0.0.1")
    assert env.networks("NOTIFY_WEBHOOK_ALLOWED_NETWORKS") == ["10.20.0.0/16", "127.0.0.1"]
    monkeypatch.setenv("NOTIFY_WEBHOOK_ALLOWED_NETWORKS", "10.20.0.0/16,intranet")
    with pytest.raises(ImproperlyConfigured, match="NOTIFY_WEBHOOK_ALLOWED_NETWORKS: 'intranet' does not appear"):
        env.networks("NOTIFY_WEBHOOK_ALLOWED_NETWORKS")


def test_an_unknown_time_zone_is_refused(monkeypatch):
    monkeypatch.setenv("TIME_ZONE", "Mars/Olympus")
    with pytest.raises(ImproperlyConfigured, match="TIME_ZONE: 'Mars/Olympus' is not an IANA time zone"):
        env.timezone("TIME_ZONE", "UTC")


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://x/y", "unsupported scheme 'mysql'"),
        ("postgres://host:port/db", "the port is not a number"),
        ("postgres://host/", "names no database"),
        ("sqlite:///", "needs a file path"),
    ],
)
def test_bad_database_urls_are_refused(monkeypatch, url, message):
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ImproperlyConfigured, match=f"DATABASE_URL: .*{message}"):
        env.database("DATABASE_URL", "sqlite:///x")


def test_database_urls_are_parsed(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p%40ss@db.example:6543/warden?sslmode=require")
    parsed = env.database("DATABASE_URL", "sqlite:///x")
    assert (parsed["ENGINE"], parsed["NAME"], parsed["USER"], parsed["PASSWORD"]) == (
        "common.postgresql",
        "warden",
        "u",
        "p@ss",
    )
    assert (parsed["HOST"], parsed["PORT"], parsed["OPTIONS"]) == ("db.example", "6543", {"sslmode": "require"})
    monkeypatch.setenv("DATABASE_URL", "sqlite:////var/lib/warden/db.sqlite3")
    assert env.database("DATABASE_URL", "x")["NAME"] == "/var/lib/warden/db.sqlite3"


def test_a_redis_url_must_be_redis(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "http://localhost:6379")
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL: expected redis://"):
        env.redis_url("REDIS_URL")


def test_secrets_are_read_from_files(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("SECRET_KEY_FILE", str(secret))
    assert env.string("SECRET_KEY", secret=True) == "from-a-file"
    monkeypatch.setenv("SECRET_KEY", "direct")
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY and SECRET_KEY_FILE are both set"):
        env.string("SECRET_KEY", secret=True)
    monkeypatch.delenv("SECRET_KEY")
    monkeypatch.setenv("SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY_FILE: cannot read"):
        env.string("SECRET_KEY", secret=True)


def test_start_up_stops_without_a_secret_key_when_debug_is_off():
    result = manage("check", DEBUG="false", ALLOWED_HOSTS="warden.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off." in result.stderr


def test_start_up_stops_on_a_bad_value_naming_it():
    result = manage("check", DEBUG="yes please")
    assert result.returncode != 0
    assert "DEBUG: expected true or false" in result.stderr


def test_check_deploy_is_clean_with_debug_off():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="false",
        SECRET_KEY="k" * 20 + "-a-long-random-value-0123456789-abcdefghijklmnop",
        ALLOWED_HOSTS="warden.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_a_bad_log_level_and_a_bad_connection_age_name_their_variable(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "verbose")
    with pytest.raises(ImproperlyConfigured, match="LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR"):
        env.choice("LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR"])
    monkeypatch.setenv("DATABASE_URL", "postgres://h/db?conn_max_age=soon")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL: conn_max_age must be a whole number"):
        env.database("DATABASE_URL", "sqlite:///x")
