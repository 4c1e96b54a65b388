"""`sam build` and `sam validate` as the Deploy section of README.md runs them: from the repository root, with the
committed samconfig.toml and infra/params.example.yaml, stdin closed (a prompt would fail the run).

Compiling seven release binaries takes a quarter of an hour, so `cargo` is a stand-in here: `cargo lambda build`
records its arguments and writes a placeholder bootstrap; every other cargo command (SAM runs `cargo metadata` to
find the target directory) goes to the real cargo. What is checked is SAM's side: it reads the template (loops
and all), asks nothing, builds every function with the architecture the parameters give, and writes the built
template. infra/build compiles for real.

Needs the SAM CLI: `P2C_SAM_BUILD_TEST=1 infra/check` installs the pinned version and sets P2C_SAM_CLI; skipped
without it (sam build copies the whole workspace, target/ included, per function: too slow for every test run).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_template import ROOT, workspace_binaries  # noqa: E402

SAM = os.environ.get("P2C_SAM_CLI")
pytestmark = pytest.mark.skipif(not SAM, reason="P2C_SAM_CLI is not set (infra/check sets it)")

STUB = """#!/usr/bin/env bash
if [ "$1" = lambda ]; then
  echo "$*" >> "$P2C_STUB_LOG"
  bin=""; prev=""
  for a in "$@"; do [ "$prev" = --bin ] && bin="$a"; prev="$a"; done
  mkdir -p "$CARGO_TARGET_DIR/lambda/$bin" && printf 'placeholder\\n' > "$CARGO_TARGET_DIR/lambda/$bin/bootstrap"
  exit 0
fi
exec {cargo} "$@"
"""


def sam(tmp: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    stubs = tmp / "bin"
    stubs.mkdir(exist_ok=True)
    for name, text in {
        "cargo": STUB.replace("{cargo}", shutil.which("cargo") or "cargo"),
        "cargo-lambda": "#!/bin/sh\necho cargo-lambda 1.9.2\n",
    }.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod((stubs / name).stat().st_mode | stat.S_IEXEC)
    log = tmp / "cargo-lambda.log"
    log.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PATH": f"{stubs}{os.pathsep}{os.environ.get('PATH', '')}",
        "P2C_STUB_LOG": str(log),
        "CARGO_TARGET_DIR": str(tmp / "target"),
        "SAM_CLI_TELEMETRY": "0",
        "AWS_REGION": "us-east-1",
    }
    out = subprocess.run(
        [SAM, *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900
    )
    return out, (log.read_text().splitlines() if log.exists() else [])


def build_args(tmp: Path, *overrides: str) -> list[str]:
    return [
        "build",
        "--build-dir",
        str(tmp / "build"),
        "--cache-dir",
        str(tmp / "cache"),
        "--parameter-overrides",
        "file://infra/params.example.yaml",
        *overrides,
    ]


def test_sam_build_asks_nothing_and_builds_every_function_for_arm64(tmp_path):
    out, calls = sam(tmp_path, *build_args(tmp_path))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert sorted(calls) == sorted(f"lambda build --release --arm64 --bin {b}" for b in workspace_binaries())
    built = (tmp_path / "build" / "template.yaml").read_text()
    # CloudFormation expands the loops at deploy time: the built template keeps them.
    assert "Fn::ForEach::AccountsToFnoSchedules" in built
    for b in workspace_binaries():
        fn = "".join(p.capitalize() for p in b.split("-")) + "Function"
        assert (tmp_path / "build" / fn / "bootstrap").exists(), fn


def test_sam_build_for_x86_64(tmp_path):
    out, calls = sam(tmp_path, *build_args(tmp_path, "Architecture=x86_64"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert sorted(calls) == sorted(f"lambda build --release --bin {b}" for b in workspace_binaries())


def test_sam_validate_lints_the_template(tmp_path):
    out, _ = sam(tmp_path, "validate")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "is a valid SAM Template" in out.stdout + out.stderr
