"""Pure rules: ids, backoff, query files, settings parsing, passwords, redaction."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kubebyon.db.migrate import MigrationError, load_migrations
from kubebyon.db.queries import QUERIES, parse_queries
from kubebyon.domain.ids import has_prefix, new_id
from kubebyon.domain.passwords import hash_password, password_problem, verify_password
from kubebyon.logs import redact
from kubebyon.runtime.backoff import backoff_seconds
from kubebyon.secretbox import SecretKeyError, load_or_create_keys
from kubebyon.settings import ConfigurationError, load_settings, parse_http_addr


def test_ids_are_prefixed_sortable_and_dns_safe() -> None:
    early = new_id("cl", now_ms=1_000)
    late = new_id("cl", now_ms=2_000)
    assert early.startswith("cl_")
    assert early < late
    assert has_prefix(early, "cl")
    assert not has_prefix(early, "usr")
    assert early == early.lower()
    with pytest.raises(ValueError, match="unknown id prefix"):
        new_id("nope")


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(0)
    delays = [backoff_seconds(n, base=1, cap=60, rng=rng) for n in range(1, 10)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(60, 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert backoff_seconds(0) == 0
    assert backoff_seconds(10_000, cap=300) <= 300


def test_query_files_parse_and_reject_duplicates() -> None:
    assert "claim_keys" in QUERIES.names()
    assert "FOR UPDATE SKIP LOCKED" in QUERIES.claim_keys
    with pytest.raises(AttributeError, match="no SQL query named"):
        _ = QUERIES.no_such_query
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;", "x.sql")
    with pytest.raises(ValueError, match="before the first"):
        parse_queries("SELECT 0;\n-- name: a\nSELECT 1;", "x.sql")


def test_migration_files_are_numbered_without_gaps(tmp_path: Path) -> None:
    assert load_migrations()[0].version == 1
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="without gaps"):
        load_migrations(tmp_path)
    (tmp_path / "bad-name.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"not NNNN_name\.sql"):
        load_migrations(tmp_path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (":8080", ("0.0.0.0", 8080)),  # noqa: S104 - the seed's form means every interface
        ("127.0.0.1:9", ("127.0.0.1", 9)),
        ("[::1]:80", ("::1", 80)),
    ],
)
def test_http_addr_accepts_the_seed_forms(value: str, expected: tuple[str, int]) -> None:
    assert parse_http_addr(value) == expected


@pytest.mark.parametrize("value", [":notaport", "8080", "host:0", "host:70000", ""])
def test_http_addr_rejects_nonsense(value: str) -> None:
    with pytest.raises(ValueError, match=r"expected|port"):
        parse_http_addr(value)


def test_settings_errors_are_one_line_per_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEBYON_HTTP_ADDR", ":notaport")
    monkeypatch.setenv("KUBEBYON_TRUSTED_PROXY_CIDRS", "10.0.0.0/8, not-a-cidr")
    monkeypatch.setenv("KUBEBYON_CORS_ALLOWED_ORIGINS", "https://console.example.com,ftp://x")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert sorted(line.split(":")[0] for line in info.value.lines) == [
        "KUBEBYON_CORS_ALLOWED_ORIGINS",
        "KUBEBYON_HTTP_ADDR",
        "KUBEBYON_TRUSTED_PROXY_CIDRS",
    ]
    assert any("'not-a-cidr' is not an IP network" in line for line in info.value.lines)


def test_rules_across_variables_and_empty_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEBYON_DATABASE_URL", "")  # empty means unset: embedded database
    monkeypatch.setenv("KUBEBYON_DB_POOL_MIN_SIZE", "20")
    monkeypatch.setenv("KUBEBYON_BOOTSTRAP_ADMIN_EMAIL", "admin@example.com")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert info.value.lines == [
        "KUBEBYON_DB_POOL_MIN_SIZE must not exceed KUBEBYON_DB_POOL_MAX_SIZE"
    ]
    monkeypatch.delenv("KUBEBYON_DB_POOL_MIN_SIZE")
    with pytest.raises(ConfigurationError, match="set both KUBEBYON_BOOTSTRAP_ADMIN_EMAIL"):
        load_settings()
    monkeypatch.setenv("KUBEBYON_BOOTSTRAP_ADMIN_PASSWORD", "short")
    with pytest.raises(ConfigurationError, match="at least 10 characters"):
        load_settings()
    monkeypatch.setenv("KUBEBYON_BOOTSTRAP_ADMIN_PASSWORD", "long-enough-password")
    monkeypatch.setenv("KUBEBYON_BOOTSTRAP_ADMIN_EMAIL", "Admin@EXAMPLE.com")
    settings = load_settings()
    assert settings.database_url is None
    assert settings.bootstrap_admin_email == "Admin@example.com"


def test_corrupt_secret_key_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_text("not a key\n")
    with pytest.raises(SecretKeyError, match="not a valid secret key"):
        load_or_create_keys(None, tmp_path)
    fresh = tmp_path / "fresh"
    keys = load_or_create_keys(None, fresh)
    assert load_or_create_keys(None, fresh) == keys  # generated once, then reused
    assert (fresh / "secret.key").stat().st_mode & 0o777 == 0o600


def test_missing_host_files_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBEBYON_KUBECONFIG_PATH", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert info.value.lines == [
        f"KUBEBYON_KUBECONFIG_PATH: {tmp_path / 'missing.yaml'} is not a readable file"
    ]


def test_settings_defaults_match_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KUBEBYON_HTTP_ADDR", "KUBEBYON_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBEBYON_CORS_ALLOWED_ORIGINS", "https://a.example/, *")
    monkeypatch.setenv("KUBEBYON_SECRET_KEY", "very-secret")
    settings = load_settings()
    assert settings.listen == ("127.0.0.1", 8080)
    assert settings.cors_allowed_origins == ["https://a.example", "*"]
    limits = (
        settings.join_rate_limit_window_seconds,
        settings.join_rate_limit_burst,
        settings.join_rate_limit_max_entries,
        settings.auth_rate_limit_window_seconds,
        settings.auth_rate_limit_burst,
        settings.auth_rate_limit_max_entries,
    )
    assert limits == (3, 5, 10000, 30, 5, 5000)
    masked = settings.masked()
    assert masked["KUBEBYON_SECRET_KEY"] == "(set, hidden)"
    assert "very-secret" not in str(masked)


def test_passwords_hash_with_argon2id_and_verify() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "wrong password!")
    assert not verify_password(None, "anything at all")
    assert password_problem("short") == "password must be at least 10 characters"
    assert password_problem("long enough password") is None


def test_log_redaction_masks_secret_looking_keys() -> None:
    event = {
        "event": "login",
        "password": "hunter2hunter2",
        "api_key": "kb_live_x",
        "session_id": "abc",
        "user_id": "usr_1",
        "status": 200,
    }
    out = redact(None, "info", dict(event))
    assert out["password"] == out["api_key"] == out["session_id"] == "[redacted]"
    assert out["user_id"] == "usr_1"
    assert out["status"] == 200
