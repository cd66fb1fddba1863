"""The fetcher's poll logic that needs no database: fetching ahead, and isolating a message the server cannot deliver.

The remote is a FakeRemote (tests/support/fake_remote.py); the ledger side
of the poll is in tests/integration/test_fetcher_ledger.py.
"""

from __future__ import annotations

import threading

import pytest

from services.fetcher import poll
from services.fetcher.poll import Poller, _ahead
from shared.mailserver.remote import Fetched, RemoteError
from tests.support.fake_remote import FakeRemote, mail

MAX = 10 * 1024 * 1024


def fetch_all(remote: FakeRemote, ids: list[str]) -> list[Fetched]:
    # _fetch touches only the remote; the poller's pool, publisher and topology are not used.
    return list(Poller(None, None, None)._fetch(remote, ids, MAX))  # type: ignore[arg-type]


def server(n: int) -> FakeRemote:
    return FakeRemote({str(i): mail(i) for i in range(1, n + 1)})


# -- isolating an unfetchable message ------------------------------------------------


def test_a_message_that_breaks_the_connection_is_reported_and_the_rest_are_fetched() -> None:
    remote = server(5)
    remote.failures["3"] = 99  # every time
    got = fetch_all(remote, ["1", "2", "3", "4", "5"])
    assert [(f.remote_id, f.error is None) for f in got] == [
        ("1", True), ("2", True), ("3", False), ("4", True), ("5", True)]
    assert "while fetching 3" in got[2].error  # the server's words, for the operator
    assert got[2].data == b"" and got[3].data == mail(4)
    # The batch, then one by one: 3 twice (once more after a reconnect), 4 and 5 once each.
    assert remote.fetched == [["1", "2", "3", "4", "5"], ["3"], ["3"], ["4"], ["5"]]
    assert remote.reopened == 3  # after the batch broke, after 3's first try, after its second


def test_a_message_that_fails_once_is_fetched_on_the_second_try() -> None:
    remote = server(3)
    remote.failures["2"] = 2  # the batch and the first single try
    got = fetch_all(remote, ["1", "2", "3"])
    assert [(f.remote_id, f.error) for f in got] == [("1", None), ("2", None), ("3", None)]
    assert [f.data for f in got] == [mail(1), mail(2), mail(3)]


def test_three_unfetchable_in_a_row_is_the_server_not_the_messages() -> None:
    remote = server(6)
    for i in ("2", "3", "4"):
        remote.failures[i] = 99
    with pytest.raises(RemoteError, match="while fetching 2"):  # the batch's own failure
        fetch_all(remote, ["1", "2", "3", "4", "5", "6"])
    assert ["5"] not in remote.fetched  # it gave up instead of trying the rest one by one


def test_two_unfetchable_apart_are_both_isolated() -> None:
    remote = server(6)
    remote.failures["2"] = remote.failures["5"] = 99
    got = fetch_all(remote, [str(i) for i in range(1, 7)])
    assert [f.remote_id for f in got if f.error] == ["2", "5"]
    assert [f.remote_id for f in got if not f.error] == ["1", "3", "4", "6"]


def test_without_reopen_a_fetch_failure_fails_the_poll() -> None:
    remote = FakeRemote({"a": mail(1), "b": mail(2)}, reopenable=False)
    remote.failures["b"] = 99
    with pytest.raises(RemoteError, match="while fetching b"):
        fetch_all(remote, ["a", "b"])


def test_a_failure_to_reconnect_fails_the_poll() -> None:
    remote = server(3)
    remote.failures["2"] = 99

    def refuse() -> None:
        raise RemoteError("login", "the server refused the user name or password", transient=False)

    remote.reopen = refuse
    with pytest.raises(RemoteError) as raised:
        fetch_all(remote, ["1", "2", "3"])
    assert raised.value.step == "login"


def test_ids_are_fetched_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poll, "FETCH_CHUNK", 2)
    remote = server(5)
    assert [f.remote_id for f in fetch_all(remote, ["1", "2", "3", "4", "5"])] == ["1", "2", "3", "4", "5"]
    assert remote.fetched == [["1", "2"], ["3", "4"], ["5"]]


def test_an_oversized_message_is_fetched_as_its_headers() -> None:
    remote = FakeRemote({"big": mail(1, size=5000)})
    [got] = list(Poller(None, None, None)._fetch(remote, ["big"], 1000))  # type: ignore[arg-type]
    assert got.truncated and got.size == len(mail(1, size=5000)) and got.data.endswith(b"\r\n\r\n")


# -- fetching ahead -------------------------------------------------------------------


def test_fetch_ahead_keeps_order_and_stops_its_thread() -> None:
    items = [Fetched(str(i), b"x", 1) for i in range(50)]
    before = threading.active_count()
    assert [f.remote_id for f in _ahead(iter(items), depth=3)] == [str(i) for i in range(50)]
    assert threading.active_count() == before


def test_fetch_ahead_hands_the_remotes_error_to_the_poll() -> None:
    def items():
        yield Fetched("1", b"x", 1)
        raise RemoteError("fetch", "the connection broke")

    got = []
    with pytest.raises(RemoteError, match="the connection broke"):
        for item in _ahead(items(), depth=3):
            got.append(item.remote_id)
    assert got == ["1"]


def test_fetch_ahead_stops_fetching_when_the_poll_stops_reading() -> None:
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield Fetched(str(i), b"x", 1)

    reader = _ahead(items(), depth=2)
    assert next(reader).remote_id == "0"
    reader.close()  # the poll failed (lease lost, database down)
    assert len(produced) <= 5  # bounded by the depth, not the mailbox
