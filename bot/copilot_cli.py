"""Where the Copilot CLI binary lives: installing the pinned version and finding it again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from bot.errors import CliNotFound

PACKAGE = "@github/copilot"
# Pinned with github-copilot-sdk 1.0.25 in pyproject.toml: both speak protocol version 3.
VERSION = "1.0.102"


def installed_version(cli_dir: Path) -> str | None:
    manifest = cli_dir / "node_modules" / "@github" / "copilot" / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _installed_binary(cli_dir: Path) -> Path | None:
    # npm installs the binary for this platform as @github/copilot-<os>-<arch>/copilot.
    for binary in sorted((cli_dir / "node_modules" / "@github").glob("copilot-*/copilot")):
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary.resolve()
    return None


def find_cli(cli_dir: Path, explicit: Path | None = None) -> Path:
    """`explicit` (COPILOT_CLI_PATH) if set, else the binary `install_cli` put in `cli_dir`."""
    binary = explicit or _installed_binary(cli_dir)
    if binary is None:
        raise CliNotFound(
            f"the Copilot CLI is not installed in {cli_dir}: run `threadpilot runtime install` "
            "(needs npm) or set COPILOT_CLI_PATH"
        )
    return binary


def install_cli(cli_dir: Path) -> Path:
    """Install the pinned CLI from npm into `cli_dir` (no-op when already there)."""
    if installed_version(cli_dir) != VERSION:
        npm = shutil.which("npm")
        if npm is None:
            raise CliNotFound("npm is needed to install the Copilot CLI; install Node.js first")
        cli_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(cli_dir),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                f"{PACKAGE}@{VERSION}",
            ],
            check=True,
        )
    binary = _installed_binary(cli_dir)
    if binary is None:
        raise CliNotFound(
            f"npm finished but no Copilot CLI binary for this platform is in {cli_dir}"
        )
    return binary
