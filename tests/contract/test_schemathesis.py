"""Property-based API tests of each service against its own OpenAPI (schemathesis CLI, bounded examples).

No 5xx, and responses, status codes and content types match the schema. Domain rules (check digits, tree
placement, identity-number checksums) cannot be expressed in JSON Schema, so a schema-valid request may still
be refused with 422: the "schema-valid data must be accepted" check is skipped.

The services verify access tokens against a JWK Set served here by a test issuer, which stands in for the auth
service; the tokens name the bootstrap administrator of the demo seeds. The auth service runs for real and is
called with its demo app's admin token: its sign-in forms answer 403 without the browser's CSRF cookie and PAR
wants client authentication, so for those the run checks the documented error answers (the flows themselves are
tested end to end under services/auth/tests/oidc).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Proc, service_env, start_process, stop_process
from tongban_auth.seed import DEMO_APP_SECRET
from tongban_kit.demo import demo_user_id
from tongban_kit.nats import StreamSpec, connect
from tongban_kit.natsserver import free_port
from tongban_kit.testing.tokens import JwksServer, TestIssuer

MAX_EXAMPLES = 30
ISSUER = TestIssuer()
ADMIN_SCOPES = "org:read org:write user:read user:write admin"


def bearer(scopes: str) -> str:
    """An Authorization header for the demo administrator, valid for the whole run."""
    now = int(time.time())
    token = ISSUER.mint(sub=demo_user_id("demo-admin"), client_id="demo-app", scope=scopes, exp=now + 3600)
    return f"Authorization: Bearer {token}"


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    """The test issuer's JWK Set over HTTP (in a thread: the CLI runs while the test blocks)."""
    server = JwksServer(ISSUER)
    yield server.url
    server.close()


@pytest.fixture(scope="module")
async def auth_stream(nats_url: str, nats_namespace: str) -> None:
    """The auth service's event stream, so the services' revocation feeds catch up at once on start."""
    bus = await connect(nats_url, name="schemathesis", namespace=nats_namespace)
    try:
        await bus.ensure_stream(StreamSpec("AUTH_EVENTS", ("auth.*.*.v1",), "Events of the authentication service"))
    finally:
        await bus.close()


def _token_env(service: str, jwks: str) -> dict[str, str]:
    prefix = f"TONGBAN_{service.upper()}_"
    return {f"{prefix}OIDC_ISSUER": ISSUER.issuer, f"{prefix}OIDC_JWKS_URL": jwks}


def _serve(service: str, db: str, nats: tuple[str, str], logs: Path, env: dict[str, str]) -> Iterator[Proc]:
    """A service process on its own port, stopped when the module's tests are done."""
    port = free_port()
    full = service_env(service, db, nats[0], nats[1], port) | env
    p = start_process(f"tongban_{service}", full, port, logs / f"{service}.log", ("serve",))
    yield p
    stop_process(p)


@pytest.fixture(scope="module")
def org_api(
    org_db: str,
    nats_url: str,
    nats_namespace: str,
    jwks_url: str,
    auth_stream: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    """An org service process that accepts the test issuer's tokens."""
    logs = tmp_path_factory.mktemp("logs")
    yield from _serve("org", org_db, (nats_url, nats_namespace), logs, _token_env("org", jwks_url))


@pytest.fixture(scope="module")
def user_api(
    user_db: str,
    org_api: Proc,
    nats_url: str,
    nats_namespace: str,
    jwks_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    """A user service process (next to the org service it asks) that accepts the test issuer's tokens."""
    logs = tmp_path_factory.mktemp("logs")
    yield from _serve("user", user_db, (nats_url, nats_namespace), logs, _token_env("user", jwks_url))


@pytest.fixture(scope="module")
def auth_api(
    auth_db: str,
    user_api: Proc,
    nats_url: str,
    nats_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    """An auth service process (next to the user and org services it asks) whose demo app may administer apps."""
    logs = tmp_path_factory.mktemp("logs")
    admins = {"TONGBAN_AUTH_BOOTSTRAP_ADMINS": json.dumps(["demo-app"])}
    yield from _serve("auth", auth_db, (nats_url, nats_namespace), logs, admins)


@pytest.fixture(scope="module")
def message_api(
    message_db: str,
    user_api: Proc,
    nats_url: str,
    nats_namespace: str,
    jwks_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    """A message service process (next to the org and user services it asks) accepting the test issuer's tokens."""
    logs = tmp_path_factory.mktemp("logs")
    yield from _serve("message", message_db, (nats_url, nats_namespace), logs, _token_env("message", jwks_url))


def run_schemathesis(url: str, headers: list[str], report_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI against a live service."""
    cmd = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        url + "/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "20261126",
        "--request-timeout",
        "10",
        "--suppress-health-check",
        "all",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(report_dir),
    ]
    for h in headers:
        cmd += ["--header", h]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_org_api_conforms(org_api: Proc, tmp_path: Path) -> None:
    out = run_schemathesis(org_api.url, [bearer(ADMIN_SCOPES)], tmp_path)
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]


@pytest.mark.parametrize("scopes", ["", "user:pii"])
def test_user_api_conforms(user_api: Proc, tmp_path: Path, scopes: str) -> None:
    out = run_schemathesis(user_api.url, [bearer(f"{ADMIN_SCOPES} {scopes}".strip())], tmp_path)
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]


def test_auth_api_conforms(auth_api: Proc, tmp_path: Path) -> None:
    basic = base64.b64encode(f"demo-app:{DEMO_APP_SECRET}".encode()).decode()
    req = urllib.request.Request(
        auth_api.url + "/oauth2/token",
        data=b"grant_type=client_credentials&scope=admin",
        headers={"Authorization": f"Basic {basic}"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        token = json.loads(r.read())["access_token"]
    out = run_schemathesis(auth_api.url, [f"Authorization: Bearer {token}"], tmp_path)
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]


def test_message_api_conforms(message_api: Proc, tmp_path: Path) -> None:
    out = run_schemathesis(message_api.url, [bearer("admin message:send message:read")], tmp_path)
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]
