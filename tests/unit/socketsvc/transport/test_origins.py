"""Origin policy: the configured origins, plus the service's own so its pages keep working."""

from __future__ import annotations

from socketsvc.transport.origins import OriginPolicy, cors_setting


def environ(host: str = "chat.example.com", **extra: str) -> dict[str, str]:
    return {"HTTP_HOST": host, "wsgi.url_scheme": "http", **extra}


def test_configured_and_own_origins_pass_others_fail():
    policy = cors_setting(("https://shop.example.com",))
    assert isinstance(policy, OriginPolicy)
    assert policy("https://shop.example.com", environ())
    assert policy("http://chat.example.com", environ())
    assert not policy("https://evil.example.com", environ())
    assert not policy("https://shop.example.com.evil.net", environ())


def test_own_origin_behind_a_tls_proxy():
    policy = OriginPolicy(("https://shop.example.com",))
    proxied = environ(
        "internal:8080", HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="chat.example.com"
    )
    assert policy("https://chat.example.com", proxied)
    assert not policy("https://other.example.com", proxied)


def test_defaults():
    assert cors_setting(None) is None  # python-engineio's same-origin check
    assert cors_setting(("*",)) == "*"
