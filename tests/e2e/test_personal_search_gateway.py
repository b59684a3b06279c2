"""The SCIM filter attack on a masked mobile number, replayed through a real gateway to a real user service."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Proc, start_process, stop_process
from tests.contract.test_schemathesis import ISSUER, auth_stream, jwks_url, org_api, user_api  # noqa: F401
from tongban_kit.demo import demo_user_id
from tongban_kit.natsserver import free_port


@pytest.fixture(scope="module")
def gateway(
    user_api: Proc,  # noqa: F811
    jwks_url: str,  # noqa: F811
    nats_url: str,
    nats_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    """A gateway process routing /scim/v2 to the user service, trusting the test issuer's tokens."""
    port = free_port()
    env = {
        "TONGBAN_GATEWAY_PORT": str(port),
        "TONGBAN_GATEWAY_ENVIRONMENT": "test",
        "TONGBAN_GATEWAY_UPSTREAMS": json.dumps({"user": [user_api.url]}),
        "TONGBAN_GATEWAY_PUBLIC_URL": ISSUER.issuer,
        "TONGBAN_GATEWAY_OIDC_JWKS_URL": jwks_url,
        "TONGBAN_GATEWAY_NATS_URL": nats_url,
        "TONGBAN_GATEWAY_NATS_NAMESPACE": nats_namespace,
        "TONGBAN_GATEWAY_REDIS_URL": "",
        "TONGBAN_GATEWAY_LOG_LEVEL": "WARNING",
    }
    p = start_process("tongban_gateway", env, port, tmp_path_factory.mktemp("logs") / "gateway.log")
    yield p
    stop_process(p)


def _call(url: str, scopes: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    token = ISSUER.mint(sub=demo_user_id("demo-admin"), client_id="demo-app", scope=scopes, exp=int(time.time()) + 600)
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/scim+json"
        data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_masked_mobile_cannot_be_probed_through_the_gateway(gateway: Proc) -> None:
    # an account of this test's own, so that what other tests of the same user service do cannot matter
    tag = secrets.randbelow(10**8)
    name, mobile = f"probe.{tag}", f"139{tag:08d}"
    person = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "displayName": "探测对象",
        "phoneNumbers": [{"value": mobile, "type": "mobile"}],
    }
    status, made = _call(f"{gateway.url}/scim/v2/Users", "user:read user:write admin", person)
    assert status == 201, made
    right, wrong = mobile[:5], mobile[:4] + str((int(mobile[4]) + 1) % 10)

    def users(prefix: str, scopes: str) -> tuple[int, dict[str, Any]]:
        flt = f'userName eq "{name}" and phoneNumbers[value sw "{prefix}"]'
        return _call(f"{gateway.url}/scim/v2/Users?" + urllib.parse.urlencode({"filter": flt, "count": 0}), scopes)

    masked = "user:read admin"
    hit, miss = users(right, masked), users(wrong, masked)
    assert hit[0] == miss[0] == 403, (hit, miss)
    assert hit[1] == miss[1] and "phoneNumbers[value]" in hit[1]["detail"] and mobile not in str(hit)
    # with the right to unmask, the same search works (and the user service audits it)
    status, body = users(right, masked + " user:pii")
    assert status == 200 and body["totalResults"] == 1, body
    status, body = users(wrong, masked + " user:pii")
    assert status == 200 and body["totalResults"] == 0, body
