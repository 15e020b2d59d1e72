"""Pure identity rules: origins and CSRF, the client address, the rate limiter, avatars."""

from __future__ import annotations

import io
import ipaddress
import struct
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from PIL import Image

from kubebyon.domain.audit import activity_type, relative_time
from kubebyon.domain.images import (
    MAX_AVATAR_BYTES,
    AvatarCorrupt,
    AvatarDimensions,
    AvatarFormat,
    AvatarProblem,
    AvatarTooLarge,
    clean_avatar,
)
from kubebyon.domain.network import client_ip
from kubebyon.domain.origins import (
    cors_headers,
    csrf_problem,
    origin_of,
    trusted_cookie_origins,
)
from kubebyon.domain.ratelimit import SlidingWindowLimiter

# --- origins ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Console.Example.com/path?q=1", "https://console.example.com"),
        ("https://example.com:443/", "https://example.com"),
        ("http://example.com:80", "http://example.com"),
        ("http://example.com:8080/x", "http://example.com:8080"),
        ("http://[::1]:9000/", "http://[::1]:9000"),
        ("ftp://example.com", None),
        ("javascript:alert(1)", None),
        ("https://", None),
        ("https://example.com:99999", None),
    ],
)
def test_origin_of_normalises_scheme_host_and_port(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


def test_trusted_cookie_origins_never_include_the_wildcard() -> None:
    trusted = trusted_cookie_origins(
        "http://127.0.0.1:8080",
        "https://console.example.com/",
        ["*", "https://app.example.com", "not a url"],
    )
    assert trusted == {
        "http://127.0.0.1:8080",
        "https://console.example.com",
        "https://app.example.com",
    }
    assert trusted_cookie_origins(None, None, ["*"]) == set()


TRUSTED = {"https://console.example.com"}


def csrf(method: str = "POST", **headers: str | None) -> str | None:
    return csrf_problem(
        method=method,
        origin=headers.get("origin"),
        referer=headers.get("referer"),
        sec_fetch_site=headers.get("sec_fetch_site"),
        trusted=TRUSTED,
    )


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "delete"])
def test_unsafe_methods_from_a_foreign_origin_are_refused(method: str) -> None:
    assert csrf(method, origin="https://evil.example") is not None
    assert csrf(method, origin="https://console.example.com") is None


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_safe_methods_are_never_refused(method: str) -> None:
    assert csrf(method, origin="https://evil.example", sec_fetch_site="cross-site") is None


def test_cross_site_fetch_metadata_is_refused_whatever_the_origin() -> None:
    problem = csrf(origin="https://console.example.com", sec_fetch_site="Cross-Site")
    assert problem is not None
    assert "Sec-Fetch-Site" in problem
    assert csrf(origin="https://console.example.com", sec_fetch_site="same-site") is None


def test_referer_counts_when_there_is_no_origin_and_null_origins_are_refused() -> None:
    assert csrf(referer="https://evil.example/page") is not None
    assert csrf(referer="https://console.example.com/clusters") is None
    assert csrf(origin="null") is not None
    # Neither header: not a browser, so not a forgery another site can drive.
    assert csrf() is None


def test_cors_gives_credentials_to_explicit_origins_only() -> None:
    allowed = ["https://console.example.com", "*"]
    explicit = cors_headers("https://console.example.com", allowed)
    assert explicit["Access-Control-Allow-Origin"] == "https://console.example.com"
    assert explicit["Access-Control-Allow-Credentials"] == "true"
    assert explicit["Vary"] == "Origin"
    wildcard = cors_headers("https://evil.example", allowed)
    assert wildcard == {"Access-Control-Allow-Origin": "*"}
    assert cors_headers("https://evil.example", ["https://console.example.com"]) == {}
    assert cors_headers(None, allowed) == {}


# --- client address ---------------------------------------------------------------

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # An untrusted peer's header is ignored entirely.
        ("203.0.113.5", "198.51.100.1", "203.0.113.5"),
        # A trusted proxy: the right-most address that is not itself a proxy.
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.1, 10.1.2.3", "198.51.100.1"),
        # Every hop a proxy: the left-most is as far as the chain can be trusted.
        ("10.0.0.2", "10.9.9.9, 10.1.2.3", "10.9.9.9"),
        # Garbage in the chain stops the walk at the last trusted hop.
        ("10.0.0.2", "198.51.100.1, not-an-ip", "10.0.0.2"),
        ("10.0.0.2", "198.51.100.1:4711", "198.51.100.1"),
        ("fd00::1", "[2001:db8::7]:443", "2001:db8::7"),
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", "", "10.0.0.2"),
        (None, "198.51.100.1", "unknown"),
    ],
)
def test_client_ip_trusts_forwarded_for_only_from_proxies_walking_from_the_right(
    peer: str | None, forwarded: str | None, expected: str
) -> None:
    assert client_ip(peer, forwarded, PROXIES) == expected


def test_client_ip_without_trusted_proxies_is_the_peer() -> None:
    assert client_ip("10.0.0.2", "198.51.100.1", []) == "10.0.0.2"


# --- rate limiter -----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_allows_a_burst_per_window_then_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(window=30, burst=5, max_entries=100, clock=clock)
    assert [limiter.check("ip|login") for _ in range(5)] == [None] * 5
    clock.now += 10
    wait = limiter.check("ip|login")
    assert wait == pytest.approx(20)
    assert SlidingWindowLimiter.retry_after_header(wait or 0) == "20"
    assert limiter.check("ip|register") is None  # another scope, another budget
    assert limiter.check("other|login") is None
    clock.now += 20  # the first hits leave the window
    assert limiter.check("ip|login") is None


def test_refused_hits_do_not_extend_the_wait() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(window=3, burst=1, max_entries=10, clock=clock)
    assert limiter.check("k") is None
    for _ in range(10):
        assert limiter.check("k") is not None
    clock.now += 3
    assert limiter.check("k") is None


def test_retry_after_is_a_whole_number_of_seconds_at_least_one() -> None:
    assert SlidingWindowLimiter.retry_after_header(0.001) == "1"
    assert SlidingWindowLimiter.retry_after_header(2.1) == "3"


def test_limiter_tracks_at_most_max_entries_forgetting_the_least_recent() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(window=60, burst=1, max_entries=3, clock=clock)
    for key in ("a", "b", "c"):
        assert limiter.check(key) is None
    assert limiter.check("a") is not None  # "a" is now the most recent
    assert limiter.check("d") is None  # evicts "b", the least recently seen
    assert len(limiter) == 3
    assert limiter.check("b") is None  # forgotten, so allowed again
    assert limiter.check("a") is not None  # still tracked
    for n in range(1000):
        limiter.check(f"flood-{n}")
    assert len(limiter) == 3


# --- avatars ----------------------------------------------------------------------


def encode(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB", **save: Any) -> bytes:
    out = io.BytesIO()
    colour: Any = 128 if mode in ("L", "P", "1", "I;16") else (10, 200, 30, 128)[: len(mode)]
    Image.new(mode, size, colour).save(out, fmt, **save)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "mode", "content_type", "stored_mode"),
    [
        ("PNG", "RGB", "image/png", "RGB"),
        ("PNG", "RGBA", "image/png", "RGBA"),
        ("PNG", "P", "image/png", "RGB"),
        ("PNG", "LA", "image/png", "RGBA"),
        ("PNG", "I;16", "image/png", "RGB"),
        ("JPEG", "L", "image/jpeg", "L"),
        ("JPEG", "CMYK", "image/jpeg", "RGB"),
        ("WEBP", "RGBA", "image/webp", "RGBA"),
    ],
)
def test_accepted_avatars_are_reencoded_in_their_own_format(
    fmt: str, mode: str, content_type: str, stored_mode: str
) -> None:
    data, kind = clean_avatar(encode(fmt, mode=mode))
    assert kind == content_type
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == fmt
        assert image.size == (40, 30)
        assert image.mode == stored_mode


def test_reencoding_drops_metadata() -> None:
    exif = Image.Exif()
    exif[0x010E] = "TOP-SECRET-DESCRIPTION"
    source = io.BytesIO()
    Image.new("RGB", (20, 20)).save(source, "WEBP", exif=exif.tobytes(), icc_profile=b"ICC!")
    data, _ = clean_avatar(source.getvalue())
    assert b"TOP-SECRET-DESCRIPTION" not in data
    with Image.open(io.BytesIO(data)) as image:
        assert not image.getexif()
        assert "icc_profile" not in image.info


def test_the_largest_allowed_avatar_passes() -> None:
    data, _ = clean_avatar(encode("PNG", size=(1024, 1024)))
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (1024, 1024)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", AvatarFormat),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", AvatarFormat),
        (encode("GIF"), AvatarFormat),
        (encode("BMP"), AvatarFormat),
        (encode("TIFF"), AvatarFormat),
        (encode("PNG", size=(1025, 1)), AvatarDimensions),
        (encode("WEBP", size=(1, 1025)), AvatarDimensions),
        (encode("PNG", size=(300, 300))[:120], AvatarCorrupt),
        (encode("JPEG", size=(300, 300))[:400], AvatarCorrupt),
        (b"\x00" * (MAX_AVATAR_BYTES + 1), AvatarTooLarge),
    ],
)
def test_refused_avatars_raise_the_rule_they_break(data: bytes, problem: type[Exception]) -> None:
    with pytest.raises(problem) as caught:
        clean_avatar(data)
    assert isinstance(caught.value, AvatarProblem)
    assert isinstance(caught.value, ValueError)
    assert caught.value.code.startswith("avatar_")
    assert str(caught.value)


def test_a_header_claiming_a_huge_image_is_refused_before_decoding() -> None:
    """A PNG header announcing 100000×100000 pixels: refused without touching pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
    with pytest.raises(AvatarDimensions):
        clean_avatar(bomb)


# --- activity presentation --------------------------------------------------------


@pytest.mark.parametrize(
    ("ago", "text"),
    [
        (timedelta(seconds=5), "just now"),
        (timedelta(minutes=1), "1 minute ago"),
        (timedelta(minutes=59), "59 minutes ago"),
        (timedelta(hours=2), "2 hours ago"),
        (timedelta(days=1, hours=3), "1 day ago"),
        (timedelta(days=65), "2 months ago"),
        (timedelta(days=800), "2 years ago"),
        (-timedelta(minutes=5), "just now"),  # clock skew never says "in the future"
    ],
)
def test_relative_time(ago: timedelta, text: str) -> None:
    now = datetime(2026, 5, 16, tzinfo=UTC)
    assert relative_time(now - ago, now) == text


def test_activity_type_joins_resource_type_and_action() -> None:
    assert activity_type("cluster", "create_requested") == "cluster_create_requested"
