"""Bodies the auth service cannot be made to choke on: the probe's nested-JSON registration, oversized forms."""

from __future__ import annotations

import httpx

from tongban_kit.testing.helpers import assert_problem


async def test_nested_json_at_registration_is_a_400_before_authentication(client: httpx.AsyncClient) -> None:
    """The probe: `[` ten thousand times with any Bearer value raised RecursionError (500) in json.loads."""
    # the route reads the body itself, so a body labelled as something else than JSON must be bounded too
    for ctype in ("application/json", "text/plain", "application/octet-stream", None):
        for bearer in ("anything", "tbiat_" + "x" * 40):
            headers = {"Authorization": f"Bearer {bearer}"} | ({"Content-Type": ctype} if ctype else {})
            r = await client.post("/oauth2/register", content="[" * 10_000, headers=headers)
            assert_problem(r, 400, "json-too-deep")


async def test_forms_are_bounded_too(client: httpx.AsyncClient) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = b"grant_type=client_credentials&pad=" + b"x" * (2 * 1024 * 1024)
    assert_problem(await client.post("/oauth2/token", content=body, headers=form), 413, "payload-too-large")
    r = await client.post("/oauth2/token", content=b"grant_type=client_credentials", headers=form)
    assert r.status_code == 401  # an ordinary form still reaches the endpoint (no client credentials: 401)
