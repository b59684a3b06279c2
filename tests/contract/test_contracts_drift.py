"""contracts/ must equal what the code generates (`make contracts` regenerates)."""

from __future__ import annotations

from pathlib import Path

from tongban_kit import contracts

ROOT = Path(__file__).resolve().parents[2] / "contracts"


def test_contracts_match_code() -> None:
    stale = contracts.diff(ROOT)
    assert not stale, f"contracts out of date, run `make contracts`: {stale}"


def test_every_service_is_catalogued() -> None:
    found = contracts.discover()
    assert "org" in found
    text = (ROOT / "asyncapi.yaml").read_text()
    for d in found.values():
        for ev in d.contract.events:
            assert f"address: {ev.subject}" in text
            assert ev.subject.count(".") == 3 and ev.subject.endswith(".v1"), "<domain>.<entity>.<verb>.v1"
        for rpc in d.contract.rpcs:
            assert f"address: {rpc.subject}" in text
