"""A tiny MCP server on stdio, for tests: one tool, `lookup`, that answers from a table.

Run as `python tests/mcp_server.py`; with `--broken` it exits before answering anything
(a server that fails to start). Every call is appended to the file named by the
MCP_CALLS environment variable, if set, so a test sees what reached the server.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

FACTS = {"launch": "The launch is on Tuesday.", "owner": "Grace owns the payments service."}


def _answer(request: dict[str, Any]) -> dict[str, Any] | None:
    method = request.get("method")
    if method == "initialize":
        result: dict[str, Any] = {
            "protocolVersion": request["params"].get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "facts", "version": "1.0"},
        }
    elif method == "tools/list":
        result = {
            "tools": [
                {
                    "name": "lookup",
                    "description": "Look up a fact by its topic.",
                    "inputSchema": {
                        "type": "object",
                        "properties": {"topic": {"type": "string"}},
                        "required": ["topic"],
                    },
                }
            ]
        }
    elif method == "tools/call":
        topic = str(request["params"]["arguments"].get("topic", ""))
        calls = os.environ.get("MCP_CALLS")
        if calls:
            with open(calls, "a") as log:
                log.write(topic + "\n")
        text = FACTS.get(topic, f"No fact about {topic}.")
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    elif "id" not in request:  # a notification
        return None
    else:
        result = {}
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


def main() -> None:
    if "--broken" in sys.argv:
        sys.stderr.write("facts: cannot open the facts database\n")
        sys.exit(3)
    for line in sys.stdin:
        if not line.strip():
            continue
        answer = _answer(json.loads(line))
        if answer is not None:
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
