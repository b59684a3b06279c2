"""Records messages published in a test run and checks each against its JSON Schema in contracts/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from nats.aio.msg import Msg

ENVELOPE_REQUIRED = ("specversion", "id", "source", "type", "time", "data")


def load_event_schemas(contracts: Path) -> dict[str, dict[str, Any]]:
    """Every schema under contracts/events, keyed by file stem (the subject, or subject.request)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((contracts / "events").glob("*.json")):
        out[path.name.removesuffix(".json")] = json.loads(path.read_text())
    return out


class EventRecorder:
    """Collects events and RPC requests under one namespace; `problems()` lists contract breaches."""

    def __init__(self, namespace: str, schemas: dict[str, dict[str, Any]]) -> None:
        self.namespace = namespace
        self.schemas = schemas
        self.validators = {k: Draft202012Validator(v) for k, v in schemas.items()}
        self.messages: list[tuple[str, bytes]] = []
        self.count = 0

    async def on_message(self, msg: Msg) -> None:
        """Subscription callback."""
        subject = msg.subject.removeprefix(self.namespace + ".")
        self.messages.append((subject, msg.data))

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Parsed events seen so far (optionally of one type)."""
        out = []
        for subject, data in self.messages:
            if subject.endswith(".v1") and (type_ is None or subject == type_):
                out.append(json.loads(data))
        return out

    def problems(self) -> list[str]:
        """Every recorded message that does not match its contract."""
        found: list[str] = []
        for subject, data in self.messages:
            if ".rpc." in subject:
                key = subject + ".request"
            elif subject.endswith(".v1"):
                key = subject
            else:
                continue
            self.count += 1
            try:
                doc = json.loads(data)
            except ValueError:
                found.append(f"{subject}: not JSON")
                continue
            validator = self.validators.get(key)
            if validator is None:
                found.append(f"{subject}: no schema contracts/events/{key}.json")
                continue
            if key == subject:
                missing = [f for f in ENVELOPE_REQUIRED if f not in doc]
                if missing or doc.get("type") != subject or doc.get("specversion") != "1.0":
                    found.append(f"{subject}: bad CloudEvents envelope (missing {missing})")
                    continue
            for err in validator.iter_errors(doc):
                found.append(f"{subject}: {err.json_path}: {err.message}")
        return found
