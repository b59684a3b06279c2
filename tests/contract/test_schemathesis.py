"""Property-based API tests of each service against its own OpenAPI (schemathesis CLI, bounded examples).

No 5xx, and responses, status codes and content types match the schema. Domain rules (check digits, tree
placement, identity-number checksums) cannot be expressed in JSON Schema, so a schema-valid request may still
be refused with 422: the "schema-valid data must be accepted" check is skipped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Proc

MAX_EXAMPLES = 30


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


def test_org_api_conforms(org_process: Proc, tmp_path: Path) -> None:
    out = run_schemathesis(org_process.url, ["X-Tongban-Principal: demo-admin"], tmp_path)
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]


@pytest.mark.parametrize("scopes", ["", "user:pii"])
def test_user_api_conforms(user_process: Proc, tmp_path: Path, scopes: str) -> None:
    headers = ["X-Tongban-Principal: demo-admin"] + ([f"X-Tongban-Scopes: {scopes}"] if scopes else [])
    out = run_schemathesis(user_process.url, headers, tmp_path)
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]
