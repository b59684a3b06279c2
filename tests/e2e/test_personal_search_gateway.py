"""The SCIM filter attack on a masked mobile number, replayed through a real gateway to a real user service."""

from __future__ import annotations

import json
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

FILTER = 'userName eq "demo-staff" and phoneNumbers[value sw "{}"]'


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


def _get(url: str, scopes: str) -> tuple[int, dict[str, Any]]:
    token = ISSUER.mint(sub=demo_user_id("demo-admin"), client_id="demo-app", scope=scopes, exp=int(time.time()) + 600)
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_masked_mobile_cannot_be_probed_through_the_gateway(gateway: Proc) -> None:
    def users(prefix: str, scopes: str) -> tuple[int, dict[str, Any]]:
        query = urllib.parse.urlencode({"filter": FILTER.format(prefix), "count": 0})
        return _get(f"{gateway.url}/scim/v2/Users?{query}", scopes)

    # demo-staff's mobile as it is now (the seed's 13500000000, unless a test of the same user service changed it)
    query = urllib.parse.urlencode({"filter": 'userName eq "demo-staff"'})
    status, found = _get(f"{gateway.url}/scim/v2/Users?{query}", "user:read admin user:pii")
    assert status == 200 and found["totalResults"] == 1, found
    mobile = next(p["value"] for p in found["Resources"][0]["phoneNumbers"])
    right, wrong = mobile[:4], mobile[:3] + str((int(mobile[3]) + 1) % 10)

    masked = "user:read admin"
    hit, miss = users(right, masked), users(wrong, masked)
    assert hit[0] == miss[0] == 403, (hit, miss)
    assert hit[1] == miss[1] and "phoneNumbers[value]" in hit[1]["detail"] and mobile not in str(hit)
    # with the right to unmask, the same search works (and the user service audits it)
    status, body = users(right, masked + " user:pii")
    assert status == 200 and body["totalResults"] == 1, body
    status, body = users(wrong, masked + " user:pii")
    assert status == 200 and body["totalResults"] == 0, body
