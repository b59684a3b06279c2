"""Contracts generated from code: OpenAPI, JSON Schema per event and RPC message, AsyncAPI catalogue.

Services register a `ServiceDescriptor` under the `tongban.services` entry-point group; `make contracts`
writes everything under contracts/, and the drift test compares the files with a fresh rendering.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from pydantic import BaseModel

from tongban_kit.app import ServiceContract
from tongban_kit.events import EventSpec
from tongban_kit.nats import subject_matches
from tongban_kit.rpc import RpcSpec

JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class ServiceDescriptor:
    """What the contract generator needs from a deployable: its contract and how to build its app."""

    contract: ServiceContract
    app_factory: Callable[[], FastAPI] | None = None
    #: how `make run` starts it: `python -m <module> migrate|seed|serve` on `dev_port`
    module: str = ""
    dev_port: int = 0
    migrate: bool = True
    seed: bool = True


def discover() -> dict[str, ServiceDescriptor]:
    """Every installed service descriptor, by name."""
    out: dict[str, ServiceDescriptor] = {}
    for ep in entry_points(group="tongban.services"):
        desc = ep.load()
        assert isinstance(desc, ServiceDescriptor), ep.value
        out[desc.contract.name] = desc
    return dict(sorted(out.items()))


def model_schema(model: type[BaseModel], schema_id: str, title: str, description: str) -> dict[str, Any]:
    """A standalone JSON Schema document for a model."""
    body = model.model_json_schema(ref_template="#/$defs/{model}")
    doc: dict[str, Any] = {
        "$schema": JSON_SCHEMA,
        "$id": schema_id,
        "title": title,
        "description": description,
    }
    doc.update({k: v for k, v in body.items() if k not in ("title", "description")})
    return doc


def event_schema(spec: EventSpec) -> dict[str, Any]:
    """JSON Schema of the whole CloudEvents envelope with this event's payload as `data`."""
    data = spec.model.model_json_schema(ref_template="#/$defs/{model}")
    defs = data.pop("$defs", {})
    data.pop("title", None)
    return {
        "$schema": JSON_SCHEMA,
        "$id": spec.schema_id,
        "title": spec.subject,
        "description": spec.description,
        "type": "object",
        "required": ["specversion", "id", "source", "type", "time", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "minLength": 1},
            "source": {"type": "string", "minLength": 1},
            "type": {"const": spec.subject},
            "subject": {"type": "string"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "dataschema": {"type": "string"},
            "traceparent": {"type": "string", "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
            "data": data,
        },
        "$defs": defs,
    }


def rpc_schemas(spec: RpcSpec) -> dict[str, dict[str, Any]]:
    """Request and response schemas of an RPC endpoint, keyed by file stem."""
    base = f"https://tongban.dev/contracts/events/{spec.subject}"
    return {
        f"{spec.subject}.request": model_schema(
            spec.request, base + ".request.json", f"{spec.subject} request", spec.description
        ),
        f"{spec.subject}.response": model_schema(
            spec.response, base + ".response.json", f"{spec.subject} response", spec.description
        ),
    }


def asyncapi(descriptors: dict[str, ServiceDescriptor]) -> dict[str, Any]:
    """The AsyncAPI 3.0 catalogue: every subject with owner, publishers and consumers."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    consumers: dict[str, list[str]] = {}
    for name, d in descriptors.items():
        for c in d.contract.consumers:
            for subj in c.subjects:
                consumers.setdefault(subj, []).append(f"{name}:{c.name}")
    for name, d in descriptors.items():
        for ev in d.contract.events:
            key = ev.subject.replace(".", "_")
            matched = sorted(
                {who for pattern, whos in consumers.items() if subject_matches(pattern, ev.subject) for who in whos}
            )
            channels[key] = {
                "address": ev.subject,
                "description": ev.description,
                "x-owner": name,
                "x-publishers": [name],
                "x-consumers": matched,
                "messages": {
                    "event": {
                        "name": ev.subject,
                        "contentType": "application/cloudevents+json",
                        "payload": {"$ref": f"./events/{ev.subject}.json"},
                    }
                },
            }
            operations[f"publish_{key}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{key}"},
                "x-service": name,
            }
        for rpc in d.contract.rpcs:
            key = rpc.subject.replace(".", "_")
            channels[key] = {
                "address": rpc.subject,
                "description": rpc.description,
                "x-owner": name,
                "x-kind": "rpc (NATS Services API, ADR-32)",
                "x-service": name,
                "messages": {
                    "request": {
                        "name": f"{rpc.subject}.request",
                        "payload": {"$ref": f"./events/{rpc.subject}.request.json"},
                    },
                    "response": {
                        "name": f"{rpc.subject}.response",
                        "payload": {"$ref": f"./events/{rpc.subject}.response.json"},
                    },
                },
            }
            operations[f"serve_{key}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{key}"},
                "x-service": name,
                "reply": {
                    "channel": {"$ref": f"#/channels/{key}"},
                    "messages": [{"$ref": f"#/channels/{key}/messages/response"}],
                },
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Tongban events and RPC",
            "version": "1.0.0",
            "description": "Every NATS subject of Tongban: events (JetStream, CloudEvents 1.0 structured "
            "JSON, Nats-Msg-Id = event id) and RPC endpoints (NATS Services API).",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
    }


def render(descriptors: dict[str, ServiceDescriptor] | None = None) -> dict[str, str]:
    """Every contract file (path relative to contracts/ → text)."""
    descriptors = discover() if descriptors is None else descriptors
    files: dict[str, str] = {}
    for name, d in descriptors.items():
        if d.app_factory is not None:
            files[f"openapi/{name}.json"] = _json(d.app_factory().openapi())
        for ev in d.contract.events:
            files[f"events/{ev.subject}.json"] = _json(event_schema(ev))
        for rpc in d.contract.rpcs:
            for stem, doc in rpc_schemas(rpc).items():
                files[f"events/{stem}.json"] = _json(doc)
    files["asyncapi.yaml"] = "# Generated by `make contracts`; do not edit.\n" + yaml.safe_dump(
        asyncapi(descriptors), sort_keys=False, allow_unicode=True, width=110
    )
    return files


def _json(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=False) + "\n"


def diff(root: Path) -> list[str]:
    """Paths under `root` whose content differs from a fresh rendering (or that should not exist)."""
    want = render()
    out = [p for p, text in want.items() if not (root / p).exists() or (root / p).read_text() != text]
    for sub in ("openapi", "events"):
        for path in (root / sub).glob("*.json"):
            rel = f"{sub}/{path.name}"
            if rel not in want:
                out.append(rel)
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    """`python -m tongban_kit.contracts write|check [--root contracts]`."""
    ap = argparse.ArgumentParser(prog="tongban-contracts")
    ap.add_argument("action", choices=["write", "check"])
    ap.add_argument("--root", default="contracts")
    args = ap.parse_args(argv)
    root = Path(args.root)
    if args.action == "check":
        stale = diff(root)
        for p in stale:
            print(f"out of date: contracts/{p}")
        return 1 if stale else 0
    want = render()
    for sub in ("openapi", "events"):
        for path in (root / sub).glob("*.json"):
            if f"{sub}/{path.name}" not in want:
                path.unlink()
    for rel, text in want.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote contracts/{rel}")
    return 0


if __name__ == "__main__":
    # run through the imported module so entry points see the same ServiceDescriptor class
    from tongban_kit import contracts as _contracts

    sys.exit(_contracts.main())
