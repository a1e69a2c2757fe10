"""Connection -> FlowServiceConnectionSettings: defaults, accepted forms, and actionable errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_flowservice._connection import (
    DEFAULT_HOST,
    DEFAULT_IMS_TOKEN_URL,
    DEFAULT_SCOPES,
    DEFAULT_UI_URL_TEMPLATE,
    FlowServiceConnectionSettings,
    is_loopback,
    parse_scopes,
)
from airflow_provider_flowservice.exceptions import FlowServiceConfigError
from airflow_provider_flowservice.version_compat import BaseHook

SECRET = "p8e-very-secret-value"


def settings(
    host: str | None = None, login: str | None = "client-id", password: str | None = SECRET, **extra: Any
) -> FlowServiceConnectionSettings:
    extra.setdefault("org_id", "ORG@AdobeOrg")
    return FlowServiceConnectionSettings.from_fields(
        conn_id="aep", host=host, login=login, password=password, extra=extra
    )


def test_defaults() -> None:
    s = settings()
    assert s.base_url == DEFAULT_HOST == "https://platform.adobe.io"
    assert s.api_url == "https://platform.adobe.io/data/foundation/flowservice"
    assert s.sandbox_name == "prod"
    assert s.scopes == DEFAULT_SCOPES
    assert (
        ",".join(s.scopes)
        == "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"
    )
    assert s.ims_token_url == DEFAULT_IMS_TOKEN_URL == "https://ims-na1.adobelogin.com/ims/token/v3"
    assert (s.connect_timeout, s.read_timeout) == (10.0, 60.0)
    assert s.verify is True
    assert s.ui_url_template == DEFAULT_UI_URL_TEMPLATE
    assert not s.uses_static_token


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("platform.adobe.io", "https://platform.adobe.io"),
        ("https://platform.adobe.io/", "https://platform.adobe.io"),
        ("https://platform.adobe.io/data/foundation/flowservice/", "https://platform.adobe.io"),
        ("  https://platform-eu.adobe.io  ", "https://platform-eu.adobe.io"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("http://localhost:8765/", "http://localhost:8765"),
        ("http://[::1]:8765", "http://[::1]:8765"),
        ("https://proxy.example.com/aep", "https://proxy.example.com/aep"),
        ("", DEFAULT_HOST),
    ],
)
def test_host_forms(host: str, expected: str) -> None:
    assert settings(host).base_url == expected


def test_port_field_is_added_when_host_has_none() -> None:
    s = FlowServiceConnectionSettings.from_fields(
        conn_id="aep", host="http://127.0.0.1", port=8765, login="id", password="s", extra={"org_id": "O"}
    )
    assert s.base_url == "http://127.0.0.1:8765"


@pytest.mark.parametrize("host", ["http://platform.adobe.io", "http://10.0.0.5:8080", "http://128.0.0.1"])
def test_plain_http_needs_loopback_or_opt_in(host: str) -> None:
    with pytest.raises(FlowServiceConfigError) as info:
        settings(host)
    message = str(info.value)
    assert "'aep'" in message and "allow_insecure_http" in message and "https://" in message
    assert settings(host, allow_insecure_http=True).base_url.startswith("http://")
    assert settings(host, allow_insecure_http="true").base_url.startswith("http://")


def test_plain_http_token_url_is_refused_too() -> None:
    with pytest.raises(FlowServiceConfigError, match="ims_url"):
        settings(ims_url="http://ims.example.com/ims/token/v3")
    assert settings(ims_url="http://127.0.0.1:9/ims/token/v3").ims_token_url.startswith("http://127")


def test_legacy_ims_token_url_extra_is_still_read() -> None:
    # Connections saved before the rename keep working; the new name wins when both are set.
    assert settings(ims_token_url="https://ims.example.com/t").ims_token_url == "https://ims.example.com/t"
    both = settings(ims_url="https://new.example.com/t", ims_token_url="https://old.example.com/t")
    assert both.ims_token_url == "https://new.example.com/t"
    with pytest.raises(FlowServiceConfigError, match="ims_token_url"):
        settings(ims_token_url="http://ims.example.com/ims/token/v3")


@pytest.mark.parametrize("name", ["ims_url", "ims_token_url"])
def test_a_masked_ims_url_saved_by_the_form_is_refused_with_the_fix(name: str) -> None:
    with pytest.raises(FlowServiceConfigError) as info:
        settings(**{name: "***"})
    message = str(info.value)
    assert f"extra {name}='***'" in message and "set extra ims_url" in message
    assert DEFAULT_IMS_TOKEN_URL in message


@pytest.mark.parametrize(
    "host", ["ftp://platform.adobe.io", "https://user:pw@platform.adobe.io", "https://platform.adobe.io/?x=1"]
)
def test_bad_hosts(host: str) -> None:
    with pytest.raises(FlowServiceConfigError, match="'aep'"):
        settings(host)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost.", True),
        ("api.localhost", False),  # resolver-dependent: plain http to it needs the opt-in
        ("evil.localhost.example.com", False),
        ("128.0.0.1", False),
        ("example.com", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback(name: str | None, ok: bool) -> None:
    assert is_loopback(name) is ok


def test_plain_http_to_a_localhost_subdomain_needs_the_opt_in() -> None:
    with pytest.raises(FlowServiceConfigError, match="allow_insecure_http"):
        FlowServiceConnectionSettings.from_fields(
            conn_id="aep", host="http://api.localhost:8080", login="id", password="s",
            extra={"org_id": "ORG@AdobeOrg", "sandbox_name": "prod"},
        )


def test_missing_org_id() -> None:
    with pytest.raises(FlowServiceConfigError) as info:
        FlowServiceConnectionSettings.from_fields(
            conn_id="aep", host=None, login="id", password="s", extra={}
        )
    assert "'aep'" in str(info.value) and "org_id" in str(info.value) and "@AdobeOrg" in str(info.value)


def test_missing_client_id() -> None:
    with pytest.raises(FlowServiceConfigError, match=r"'aep' has no client ID.*login"):
        settings(login=None)


def test_missing_secret_without_access_token() -> None:
    with pytest.raises(FlowServiceConfigError, match=r"'aep' has no client secret.*access_token"):
        settings(password="")
    s = settings(password=None, access_token="tok-123")
    assert s.uses_static_token and s.client_secret is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("openid,AdobeID", ("openid", "AdobeID")),
        (" openid , AdobeID ,", ("openid", "AdobeID")),
        ("openid AdobeID", ("openid", "AdobeID")),
        (["openid", "AdobeID"], ("openid", "AdobeID")),
        ('["openid", "AdobeID"]', ("openid", "AdobeID")),
        ("openid,openid", ("openid",)),
        (None, DEFAULT_SCOPES),
        ("", DEFAULT_SCOPES),
    ],
)
def test_scopes_forms(value: Any, expected: tuple[str, ...]) -> None:
    assert parse_scopes(value) == expected
    assert settings(scopes=value).scopes == expected


@pytest.mark.parametrize("value", ["openid,'AdobeID'", '["openid", 3]', "[not json", 42, ",,,", ["open id"]])
def test_bad_scopes(value: Any) -> None:
    with pytest.raises(FlowServiceConfigError) as info:
        settings(scopes=value)
    assert "'aep'" in str(info.value) and "scopes" in str(info.value) and "comma" in str(info.value)


def test_sandbox_is_lowercased_and_validated() -> None:
    assert settings(sandbox_name="Dev-1").sandbox_name == "dev-1"
    with pytest.raises(FlowServiceConfigError, match="sandbox_name"):
        settings(sandbox_name="my sandbox")


def test_timeouts_and_verify(tmp_path: Any) -> None:
    s = settings(connect_timeout="2.5", read_timeout=5, verify_tls="false")
    assert (s.connect_timeout, s.read_timeout, s.verify) == (2.5, 5.0, False)
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert settings(verify_tls=str(bundle)).verify == str(bundle)
    assert settings(verify_tls=True).verify is True
    with pytest.raises(FlowServiceConfigError, match="CA bundle"):
        settings(verify_tls="/no/such/ca.pem")
    for bad in (0, -1, "soon", 10_000):
        with pytest.raises(FlowServiceConfigError, match="read_timeout"):
            settings(read_timeout=bad)


def test_bad_boolean() -> None:
    with pytest.raises(FlowServiceConfigError, match="allow_insecure_http"):
        settings(allow_insecure_http="maybe")


def test_ui_url_template() -> None:
    s = settings(ui_url_template="https://x/{org_id}/{sandbox_name}/{flow_id}/{run_id}")
    assert s.ui_url("f", "r") == "https://x/ORG@AdobeOrg/prod/f/r"
    with pytest.raises(FlowServiceConfigError, match=r"\{flowid\}"):
        settings(ui_url_template="https://x/{flowid}")
    with pytest.raises(FlowServiceConfigError, match="ui_url_template"):
        settings(ui_url_template="https://x/{flow_id")


def test_prefixed_extra_keys_are_accepted() -> None:
    s = settings(**{"org_id": "", "extra__adobe_flow_service__org_id": "P@AdobeOrg"})
    assert s.org_id == "P@AdobeOrg"


def test_secrets_are_not_in_repr_or_errors() -> None:
    s = settings(access_token="static-token-xyz")
    assert SECRET not in repr(s) and "static-token-xyz" not in repr(s)
    with pytest.raises(FlowServiceConfigError) as info:
        settings(scopes="bad'", password=SECRET)
    assert SECRET not in str(info.value)


def test_settings_are_frozen() -> None:
    s = settings()
    with pytest.raises(AttributeError):
        s.org_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("extra_as_string", [False, True])
def test_connection_defined_only_by_environment_json(
    monkeypatch: pytest.MonkeyPatch, extra_as_string: bool
) -> None:
    extra: Any = {"org_id": "ENV@AdobeOrg", "sandbox_name": "dev", "scopes": ["openid", "AdobeID"]}
    conn = {
        "conn_type": "adobe_flow_service",
        "host": "https://platform.adobe.io",
        "login": "env-client",
        "password": SECRET,
        "extra": json.dumps(extra) if extra_as_string else extra,
    }
    monkeypatch.setenv("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT", json.dumps(conn))
    s = FlowServiceConnectionSettings.from_connection(BaseHook.get_connection("flow_service_default"))
    assert (s.conn_id, s.client_id, s.client_secret, s.org_id, s.sandbox_name, s.scopes) == (
        "flow_service_default",
        "env-client",
        SECRET,
        "ENV@AdobeOrg",
        "dev",
        ("openid", "AdobeID"),
    )


def test_connection_uri_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_AEP_URI",
        "adobe-flow-service://client:secret@platform.adobe.io/?org_id=URI%40AdobeOrg&sandbox_name=prod",
    )
    s = FlowServiceConnectionSettings.from_connection(BaseHook.get_connection("aep_uri"))
    assert (s.base_url, s.client_id, s.org_id) == ("https://platform.adobe.io", "client", "URI@AdobeOrg")


def test_extra_that_is_not_an_object_is_explained() -> None:
    class Conn:
        conn_id = "aep_odd"
        host = login = password = port = None
        extra = "[1, 2]"

    with pytest.raises(FlowServiceConfigError, match=r"aep_odd.*JSON object"):
        FlowServiceConnectionSettings.from_connection(Conn())


def test_the_forms_port_443_adds_nothing_to_an_https_host() -> None:
    # Port is visible in the form (Airflow 3.3's Test needs a stored port); 443 is https's own.
    assert FlowServiceConnectionSettings.from_fields(
        conn_id="aep", host=None, port=443, login="id", password="s", extra={"org_id": "O@AdobeOrg"}
    ).base_url == DEFAULT_HOST
    assert FlowServiceConnectionSettings.from_fields(
        conn_id="aep", host="https://h.example.com", port=8443, login="id", password="s",
        extra={"org_id": "O@AdobeOrg"},
    ).base_url == "https://h.example.com:8443"


def _short_secret_warning_armed() -> None:
    """Airflow warns about a too-short secret once per process: re-arm that for this test."""
    import importlib

    for module in (
        "airflow.sdk._shared.secrets_masker.secrets_masker",
        "airflow._shared.secrets_masker.secrets_masker",
        "airflow.utils.log.secrets_masker",
    ):
        try:
            masker = importlib.import_module(module).SecretsMasker
        except (ImportError, AttributeError):
            continue
        if hasattr(masker, "_has_warned_short_secret"):
            masker._has_warned_short_secret = False


def test_a_connection_saved_with_the_forms_defaults_logs_no_too_short_secret_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Airflow feeds every extra of a fetched connection to its secrets masker, which checks the
    # length before the key: a 4-character default (sandbox "prod") logged "Skipping masking for a
    # secret as it's too short (<5 chars)" in every task try.
    from airflow_provider_flowservice.get_provider_info import get_provider_info

    (conn_type,) = get_provider_info()["connection-types"]
    extra = {name: f["schema"].get("default") for name, f in conn_type["conn-fields"].items()}
    extra["org_id"] = "FORM@AdobeOrg"
    conn = {"conn_type": "adobe_flow_service", "login": "id", "password": SECRET, "extra": json.dumps(extra)}
    monkeypatch.setenv("AIRFLOW_CONN_AEP_FORM_DEFAULTS", json.dumps(conn))
    _short_secret_warning_armed()
    with caplog.at_level("DEBUG"):
        s = FlowServiceConnectionSettings.from_connection(BaseHook.get_connection("aep_form_defaults"))
    assert s.sandbox_name == "prod"  # empty is prod
    assert "too short" not in caplog.text, caplog.text
    # Not by masking less: the form's secret extra is still masked.
    static = json.dumps({**extra, "access_token": "static-0123456789"})
    monkeypatch.setenv("AIRFLOW_CONN_AEP_STATIC", json.dumps({**conn, "extra": static}))
    FlowServiceConnectionSettings.from_connection(BaseHook.get_connection("aep_static"))
    try:
        from airflow.sdk.log import redact  # type: ignore[attr-defined]
    except ImportError:
        from airflow.utils.log.secrets_masker import redact  # type: ignore[no-redef]
    assert "static-0123456789" not in str(redact("token static-0123456789")), "the static token is not masked"
