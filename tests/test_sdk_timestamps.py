"""The faster SDK timestamp parser gives the SDK's own results."""

from __future__ import annotations

import dateutil.parser
import pytest

from bot.sdk_timestamps import parse_timestamp

SAMPLES = [
    "2026-11-22T02:44:40.467Z",  # what the runtime sends
    "2026-11-22T02:44:40Z",
    "2026-11-22T02:44:40.467123+02:00",
    "2026-11-22T02:44:40",
    "Sun, 22 Nov 2026 02:44:40 GMT",  # not ISO: falls back to dateutil
]


@pytest.mark.parametrize("value", SAMPLES)
def test_same_result_as_dateutil(value: str) -> None:
    ours, theirs = parse_timestamp(value), dateutil.parser.parse(value)
    assert ours == theirs and ours.utcoffset() == theirs.utcoffset()


def test_session_events_decode_with_it() -> None:
    from copilot.session_events import SessionEvent

    event = SessionEvent.from_dict(
        {
            "id": "9bccb023-e9c0-4d36-9f3c-e098ef928e33",
            "timestamp": "2026-11-22T02:44:40.467Z",
            "type": "session.idle",
            "data": {},
        }
    )
    assert event.timestamp == dateutil.parser.parse("2026-11-22T02:44:40.467Z")
