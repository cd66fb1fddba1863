import json

import pytest

from shared import events
from shared.events import MAIL_RECEIVED, BadEvent, Event, decode


def test_round_trip_carries_type_version_and_ids_only():
    body = Event(MAIL_RECEIVED, {"raw_id": 7, "mailbox_id": 2}).encode()
    assert json.loads(body) == {"type": "mail.received", "v": 1, "ids": {"raw_id": 7, "mailbox_id": 2}}
    assert decode(body).ids == {"raw_id": 7, "mailbox_id": 2}


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"\x80\x03pickle", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"type": "nope", "v": 1, "ids": {}}', "unknown event type"),
        (b'{"type": "mail.received", "v": 99, "ids": {"raw_id": 1, "mailbox_id": 1}}', "unsupported version"),
        (b'{"type": "mail.received", "v": 1, "ids": {"raw_id": "1"}}', "missing or non-integer"),
        (b'{"type": "mail.received", "v": 1, "ids": {"raw_id": 1, "mailbox_id": 1, "x": "' + b"a" * 5000 + b'"}}',
         "ids only"),
    ],
)
def test_bad_events_are_refused_with_a_reason(body, reason):
    with pytest.raises(BadEvent, match=reason):
        decode(body)


def test_older_versions_are_upgraded(monkeypatch):
    monkeypatch.setitem(events.CURRENT_VERSION, MAIL_RECEIVED, 2)
    monkeypatch.setitem(
        events.UPGRADES, (MAIL_RECEIVED, 1), lambda ids: {"raw_id": ids["raw_id"], "mailbox_id": ids["box"]}
    )
    event = decode(b'{"type": "mail.received", "v": 1, "ids": {"raw_id": 3, "box": 4}}')
    assert event.v == 2
    assert event.ids == {"raw_id": 3, "mailbox_id": 4}
