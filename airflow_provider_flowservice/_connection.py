"""Turn an Airflow connection into validated Flow Service settings.

Validation happens once, before any request, so a wrong field fails with a message that names the
connection, the field and the fix instead of an opaque HTTP error later. Secrets (client secret,
static access token) are never part of a message or a ``repr``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_flowservice.exceptions import FlowServiceConfigError

CONN_TYPE = "adobe_flow_service"
DEFAULT_CONN_ID = "flow_service_default"
DEFAULT_HOST = "https://platform.adobe.io"
API_PATH = "/data/foundation/flowservice"
DEFAULT_SANDBOX = "prod"
DEFAULT_SCOPES: tuple[str, ...] = (
    "openid",
    "AdobeID",
    "read_organizations",
    "additional_info.projectedProductContext",
    "session",
)
DEFAULT_IMS_TOKEN_URL = "https://ims-na1.adobelogin.com/ims/token/v3"  # noqa: S105 - a URL, no secret
IMS_URL_EXTRA = "ims_url"
"""The extra holding the IMS token endpoint. Its name must not contain "token": Airflow masks such
extras, so its form would show (and save back) ``***`` instead of the URL."""
LEGACY_IMS_URL_EXTRA = "ims_token_url"
"""The name used up to 0.1: still read when ``ims_url`` is not set."""
MASKED_VALUE = "***"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_UI_URL_TEMPLATE = (
    "https://experience.adobe.com/#/platform/source/dataflows/{flow_id}/runs"
    "?sandbox={sandbox_name}&org={org_id}"
)
"""Where ``run_ui_url`` points by default: the dataflow's run list in the Experience Platform UI."""

UI_URL_PLACEHOLDERS = frozenset({"org_id", "sandbox_name", "flow_id", "run_id"})

_SCOPE_RE = re.compile(r"^[A-Za-z0-9_.:/\-]+$")
_SANDBOX_RE = re.compile(r"^[a-z0-9][a-z0-9\-]*$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class FlowServiceConnectionSettings:
    """Everything a hook needs to reach Flow Service, validated.

    :param conn_id: the Airflow connection id (named in every error message).
    :param base_url: API base URL without trailing slash, e.g. ``https://platform.adobe.io``.
    :param client_id: OAuth client ID; also sent as ``x-api-key``.
    :param client_secret: OAuth client secret (absent when a static ``access_token`` is used).
    :param org_id: IMS organization id (``x-gw-ims-org-id``).
    :param sandbox_name: sandbox (``x-sandbox-name``), lowercase.
    :param scopes: scopes asked of IMS.
    :param ims_token_url: IMS token endpoint (extra ``ims_url``; legacy extra ``ims_token_url``).
    :param access_token: a static token used as-is (no IMS call, no renewal).
    :param verify: TLS verification: ``True``, ``False`` or a CA bundle path.
    :param connect_timeout: seconds to establish a connection.
    :param read_timeout: seconds to wait for a response.
    :param ui_url_template: template of the Experience Platform UI link.
    :param allow_insecure_http: whether plain http is allowed for non-loopback hosts.
    :param token_cache: whether IMS tokens are shared with the host's other processes through a
        private file (extra ``token_cache``, default true; see docs/connection.md "Token cache").
    """

    conn_id: str
    client_id: str
    org_id: str
    client_secret: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_HOST
    sandbox_name: str = DEFAULT_SANDBOX
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    ims_token_url: str = DEFAULT_IMS_TOKEN_URL
    verify: bool | str = True
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    ui_url_template: str = DEFAULT_UI_URL_TEMPLATE
    allow_insecure_http: bool = False
    token_cache: bool = True

    @property
    def api_url(self) -> str:
        """The Flow Service root, e.g. ``https://platform.adobe.io/data/foundation/flowservice``."""
        return self.base_url + API_PATH

    def secrets(self, *tokens: str | None) -> tuple[str, ...]:
        """What no message may show: the client secret, the static token and ``tokens`` (those sent)."""
        return tuple(s for s in (self.client_secret, self.access_token, *tokens) if s)

    @property
    def uses_static_token(self) -> bool:
        """True when the connection carries a fixed ``access_token`` (no IMS, no renewal)."""
        return bool(self.access_token)

    def tls_verify(self, *, ims: bool = False) -> bool | str:
        """What both HTTP paths verify TLS with: False (API only) or a CA bundle path (see :func:`ca_bundle`).

        ``verify_tls=false`` turns verification off for the Flow Service API only: Adobe IMS, where
        the client secret is sent, stays verified (give a CA bundle path to trust a private CA).
        """
        if self.verify is False and not ims:
            return False
        return ca_bundle(self.verify)

    @property
    def host(self) -> str:
        """``host[:port]`` of the API, the only place the Authorization header is ever sent."""
        return urlsplit(self.base_url).netloc

    @classmethod
    def from_connection(cls, conn: Any) -> FlowServiceConnectionSettings:
        """Validate an Airflow ``Connection`` (2.x or 3.x) and build settings from it.

        :raises FlowServiceConfigError: naming the connection id, the bad field and the fix.
        """
        conn_id = str(getattr(conn, "conn_id", None) or DEFAULT_CONN_ID)
        extra = _extra_of(conn, conn_id)
        return cls.from_fields(
            conn_id=conn_id,
            host=getattr(conn, "host", None),
            port=getattr(conn, "port", None),
            login=getattr(conn, "login", None),
            password=getattr(conn, "password", None),
            extra=extra,
        )

    @classmethod
    def from_fields(
        cls,
        *,
        conn_id: str,
        host: str | None,
        login: str | None,
        password: str | None,
        extra: Mapping[str, Any],
        port: int | None = None,
    ) -> FlowServiceConnectionSettings:
        """Validate raw connection fields (``extra`` already decoded) and build settings."""
        get = _ExtraReader(extra)
        allow_insecure = _as_bool(get("allow_insecure_http"), conn_id, "allow_insecure_http", False)
        base_url = _base_url(conn_id, host, port, allow_insecure)
        token_url = _ims_url(conn_id, get, allow_insecure)
        access_token = _str(get("access_token"))
        client_id = _str(login)
        client_secret = _str(password)
        if not client_id:
            raise FlowServiceConfigError(
                f"Connection '{conn_id}' has no client ID. Set the connection's login to the OAuth "
                "Server-to-Server credential's client ID (it is also sent as the x-api-key header)."
            )
        if not client_secret and not access_token:
            raise FlowServiceConfigError(
                f"Connection '{conn_id}' has no client secret. Set the connection's password to the "
                "OAuth Server-to-Server credential's client secret, or set extra access_token to use a "
                "fixed access token instead."
            )
        org_id = _str(get("org_id"))
        if not org_id:
            raise FlowServiceConfigError(
                f"Connection '{conn_id}' has no org_id. Set extra org_id to the IMS organization id "
                "of the credential, e.g. ABC123DEF456@AdobeOrg (Developer Console > project > credential)."
            )
        return cls(
            conn_id=conn_id,
            base_url=base_url,
            client_id=client_id,
            client_secret=client_secret,
            org_id=org_id,
            sandbox_name=_sandbox(conn_id, get("sandbox_name")),
            scopes=parse_scopes(get("scopes"), conn_id),
            ims_token_url=token_url,
            access_token=access_token,
            verify=_verify(conn_id, get("verify_tls")),
            connect_timeout=_timeout(
                conn_id, "connect_timeout", get("connect_timeout"), DEFAULT_CONNECT_TIMEOUT
            ),
            read_timeout=_timeout(conn_id, "read_timeout", get("read_timeout"), DEFAULT_READ_TIMEOUT),
            ui_url_template=_ui_template(conn_id, get("ui_url_template")),
            allow_insecure_http=allow_insecure,
            token_cache=_as_bool(get("token_cache"), conn_id, "token_cache", True),
        )

    def ui_url(self, flow_id: str, run_id: str | None = None) -> str:
        """Fill ``ui_url_template`` (default :data:`DEFAULT_UI_URL_TEMPLATE`); no network."""
        return self.ui_url_template.format(
            org_id=self.org_id, sandbox_name=self.sandbox_name, flow_id=flow_id, run_id=run_id or ""
        )


class _ExtraReader:
    """Read an extra key, also under the ``extra__adobe_flow_service__`` prefix older UIs write."""

    def __init__(self, extra: Mapping[str, Any]) -> None:
        self._extra = extra

    def __call__(self, key: str) -> Any:
        value = self._extra.get(key)
        if value is None or value == "":
            value = self._extra.get(f"extra__{CONN_TYPE}__{key}")
        return value


def _extra_of(conn: Any, conn_id: str) -> Mapping[str, Any]:
    raw = getattr(conn, "extra_dejson", None)
    if isinstance(raw, Mapping) and raw:
        return raw
    raw = getattr(conn, "extra", None)
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, str):
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = None
        if isinstance(decoded, Mapping):
            return decoded
    raise FlowServiceConfigError(
        f"Connection '{conn_id}' has an extra that is not a JSON object. Set extra to a JSON object "
        'such as {"org_id": "ABC123@AdobeOrg", "sandbox_name": "prod"}.'
    )


def _str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _as_bool(value: Any, conn_id: str, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise FlowServiceConfigError(
        f"Connection '{conn_id}' has extra {name}={value!r}, which is not a boolean. Set it to true or false."
    )


def is_loopback(hostname: str | None) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: the only hosts plain http is accepted for by default.

    Not ``*.localhost``: whether such a name resolves to this machine depends on the resolver (RFC
    6761 only asks it to), so plain http to it needs ``allow_insecure_http`` like any other host.
    """
    if not hostname:
        return False
    name = hostname.strip("[]").lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _url(conn_id: str, name: str, value: str, allow_insecure: bool) -> str:
    text = value.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise FlowServiceConfigError(
            f"Connection '{conn_id}' has {name}={value!r}, which is not an http(s) URL. "
            f"Set it like {DEFAULT_HOST if name == 'host' else DEFAULT_IMS_TOKEN_URL}."
        )
    if parts.username or parts.password:
        raise FlowServiceConfigError(
            f"Connection '{conn_id}' has credentials inside {name}. Remove them from the URL: the client ID "
            "goes in login and the client secret in password."
        )
    if parts.scheme == "http" and not allow_insecure and not is_loopback(parts.hostname):
        raise FlowServiceConfigError(
            f"Connection '{conn_id}' has {name}={value!r}, a plain http URL: credentials would travel "
            f"unencrypted. Use https://{parts.netloc}{parts.path}, or set extra allow_insecure_http to true "
            "if this is a trusted test endpoint."
        )
    return text


def _ims_url(conn_id: str, get: _ExtraReader, allow_insecure: bool) -> str:
    """The IMS token endpoint: extra ``ims_url``, else the legacy ``ims_token_url``, else the default."""
    name, value = IMS_URL_EXTRA, _str(get(IMS_URL_EXTRA))
    if value is None:
        name, value = LEGACY_IMS_URL_EXTRA, _str(get(LEGACY_IMS_URL_EXTRA))
    if value == MASKED_VALUE:
        raise FlowServiceConfigError(
            f"Connection '{conn_id}' has extra {name}='***': Airflow's form masked the URL and saved the "
            f"mask. Remove extra {name} and set extra {IMS_URL_EXTRA} to the IMS token endpoint (or leave "
            f"it unset for the default {DEFAULT_IMS_TOKEN_URL})."
        )
    return _url(conn_id, name, value or DEFAULT_IMS_TOKEN_URL, allow_insecure).rstrip("/")


def _base_url(conn_id: str, host: str | None, port: int | None, allow_insecure: bool) -> str:
    text = _str(host) or DEFAULT_HOST
    url = _url(conn_id, "host", text, allow_insecure)
    parts = urlsplit(url)
    netloc = parts.netloc
    default_port = 443 if parts.scheme == "https" else 80
    if port and parts.port is None and int(port) != default_port:  # the form's "443" adds nothing
        netloc = f"{netloc}:{int(port)}"
    path = parts.path.rstrip("/")
    if path.endswith(API_PATH):  # users paste the full Flow Service URL; accept it
        path = path[: -len(API_PATH)]
    if parts.query or parts.fragment:
        raise FlowServiceConfigError(
            f"Connection '{conn_id}' has host={host!r} with a query or fragment. Set host to the API base "
            f"URL only, e.g. {DEFAULT_HOST}."
        )
    return f"{parts.scheme}://{netloc}{path}"


def parse_scopes(value: Any, conn_id: str = DEFAULT_CONN_ID) -> tuple[str, ...]:
    """Accept scopes as a comma (or space) separated string, a JSON list string, or a list."""
    if value is None or value in ("", []):
        return DEFAULT_SCOPES
    items: list[Any]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = None
            if not isinstance(decoded, list):
                raise _bad_scopes(conn_id, value, "it starts with '[' but is not a JSON list")
            items = decoded
        else:
            items = [s for s in re.split(r"[,\s]+", text) if s]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise _bad_scopes(conn_id, value, f"it is a {type(value).__name__}")
    scopes: list[str] = []
    for item in items:
        if not isinstance(item, str) or not _SCOPE_RE.match(item.strip()):
            raise _bad_scopes(conn_id, value, f"{item!r} is not a scope name")
        if item.strip() not in scopes:
            scopes.append(item.strip())
    if not scopes:
        raise _bad_scopes(conn_id, value, "it names no scope")
    return tuple(scopes)


def _bad_scopes(conn_id: str, value: Any, why: str) -> FlowServiceConfigError:
    return FlowServiceConfigError(
        f"Connection '{conn_id}' has extra scopes={value!r}, which cannot be used: {why}. Set it to the "
        f"credential's scopes separated by commas, e.g. {','.join(DEFAULT_SCOPES)}."
    )


def _sandbox(conn_id: str, value: Any) -> str:
    text = _str(value)
    if text is None:
        return DEFAULT_SANDBOX
    lowered = text.lower()
    if not _SANDBOX_RE.match(lowered):
        raise FlowServiceConfigError(
            f"Connection '{conn_id}' has extra sandbox_name={value!r}, which is not a sandbox name. Use the "
            "sandbox's technical name (lowercase letters, digits and hyphens), e.g. prod or dev-1."
        )
    return lowered


CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
"""Environment variables naming a CA bundle, in the order both HTTP paths read them."""


def ca_bundle(verify: bool | str = True) -> str:
    """The one CA bundle the blocking (requests) and deferrable (aiohttp) paths trust.

    Extra ``verify_tls`` when it is a path; else the first of :data:`CA_BUNDLE_ENV` that is set;
    else certifi's bundle (what ``requests`` uses by default).
    """
    if isinstance(verify, str):
        return verify
    for name in CA_BUNDLE_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    import certifi

    return str(certifi.where())


def _verify(conn_id: str, value: Any) -> bool | str:
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    if not os.path.exists(text):
        raise FlowServiceConfigError(
            f"Connection '{conn_id}' has extra verify_tls={value!r}: no such CA bundle file. Set it to true "
            "(default), false, or the path of an existing PEM CA bundle."
        )
    return text


def _timeout(conn_id: str, name: str, value: Any, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0 or seconds > 3600:
        raise FlowServiceConfigError(
            f"Connection '{conn_id}' has extra {name}={value!r}. Set it to a number of seconds between "
            f"0 and 3600 (default {default:g})."
        )
    return seconds


def _ui_template(conn_id: str, value: Any) -> str:
    text = _str(value)
    if text is None:
        return DEFAULT_UI_URL_TEMPLATE
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise FlowServiceConfigError(
            f"Connection '{conn_id}' has an unreadable extra ui_url_template ({exc}). Use placeholders "
            "{org_id} {sandbox_name} {flow_id} {run_id} and double braces for literal ones."
        ) from None
    unknown = sorted(n for n in names if n not in UI_URL_PLACEHOLDERS)
    if unknown:
        raise FlowServiceConfigError(
            f"Connection '{conn_id}' has extra ui_url_template with unknown placeholder(s) "
            f"{', '.join('{' + n + '}' for n in unknown)}. Only {{org_id}} {{sandbox_name}} {{flow_id}} "
            "{run_id} are available."
        )
    return text


def connection_form_widgets() -> dict[str, Any]:
    """Extra fields of the Airflow 2.x connection form (wtforms imported here, only when the UI asks)."""
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import PasswordField, StringField

    return {
        "org_id": StringField(lazy_gettext("IMS org ID"), widget=BS3TextFieldWidget()),
        "sandbox_name": StringField(lazy_gettext("Sandbox name"), widget=BS3TextFieldWidget()),
        "scopes": StringField(lazy_gettext("Scopes (comma-separated)"), widget=BS3TextFieldWidget()),
        IMS_URL_EXTRA: StringField(
            lazy_gettext("IMS token endpoint URL"), widget=BS3TextFieldWidget(), default=DEFAULT_IMS_TOKEN_URL
        ),
        "access_token": PasswordField(
            lazy_gettext("Static access token (optional)"), widget=BS3PasswordFieldWidget()
        ),
    }


def ui_field_behaviour() -> dict[str, Any]:
    """Labels, placeholders and hidden standard fields of the connection form (Airflow 2.x style)."""
    return {
        "hidden_fields": ["schema"],
        "relabeling": {
            "host": "API base URL",
            "port": "Port (443; needed by Test on Airflow 3.3)",
            "login": "Client ID",
            "password": "Client secret",
        },
        "placeholders": {
            "host": DEFAULT_HOST,
            "port": "443",
            "login": "0123456789abcdef0123456789abcdef",
            "password": "p8e-client-secret",
            "org_id": "ABC123DEF456@AdobeOrg",
            "sandbox_name": DEFAULT_SANDBOX,
            "scopes": ",".join(DEFAULT_SCOPES),
            IMS_URL_EXTRA: DEFAULT_IMS_TOKEN_URL,
            "access_token": "leave empty to fetch tokens with the client ID and secret",
            "extra": json.dumps({"org_id": "ABC123DEF456@AdobeOrg"}),  # no short "prod": docs/connection.md
        },
    }
