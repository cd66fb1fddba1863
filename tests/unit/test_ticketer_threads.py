"""The threading rules in memory (services/ticketer/conversation.py), no database."""

from __future__ import annotations

from services.ticketer.conversation import Threads, conversation_keys, people_of, thread_ids
from shared.msgid import make_message_id
from shared.parsed import Address, Bounce, ParsedMessage
from shared.tags import tag_pattern

KEY = b"k" * 32


def mail(mid: str | None, sender: str = "alice@example.com", subject: str = "hi",
         irt: list[str] | None = None, refs: list[str] | None = None) -> ParsedMessage:
    return ParsedMessage(from_=Address("", sender), subject=subject, message_id=mid,
                         in_reply_to=irt or [], references=refs or [],
                         to=[Address("", "support@acme.test")])


def threads() -> Threads:
    return Threads(KEY, tag_pattern("[#{id}]"))


def test_thread_ids_in_reply_to_first_then_newest_reference():
    assert thread_ids(mail("x", irt=["p"], refs=["a", "b", "p"])) == ["p", "b", "a"]


def test_conversation_keys_share_the_parent_id():
    parent, reply = mail("a"), mail("b", irt=["a"])
    assert set(conversation_keys(parent, 1)) & set(conversation_keys(reply, 2)) == {"mid:a"}
    bounce = ParsedMessage(message_id="dsn", bounce=Bounce("out-1", None))
    assert "mid:out-1" in conversation_keys(bounce, 3)


def test_people_leave_out_our_own_mailboxes():
    m = mail("a")
    m.cc = [Address("B", "Bob@Example.com")]
    assert people_of(m, frozenset({"support@acme.test"})) == {"alice@example.com", "bob@example.com"}


def test_signed_id_only_when_request_exists_and_signature_verifies():
    t = threads()
    ours = make_message_id(5, 1, KEY, "d.test")
    assert t.decide(mail("r", irt=[ours])) is None  # request 5 unknown
    t.existing.add(5)
    assert t.decide(mail("r", irt=[ours])).rule == "signed-message-id"
    forged = make_message_id(5, 1, b"other-key", "d.test")
    assert t.decide(mail("r", irt=[forged])) is None


def test_batch_memory_reply_first_then_parent_and_tag_rules():
    t = threads()
    reply = mail("b", irt=["a"])
    assert t.decide(reply) is None
    t.remember(reply, -1, new=True, people={"alice@example.com"})
    assert t.decide(mail("a")).request_id == -1  # the parent finds its reply
    assert t.decide(mail("c", irt=["b"])).rule == "message-id"
    t.existing.add(42)
    t.people[42] = {"alice@example.com"}
    assert t.decide(mail("d", subject="[#42] again")).rule == "subject-tag"
    assert t.decide(mail("e", sender="mallory@evil.test", subject="[#42] again")) is None
    t.remember(mail("f", sender="carol@x.test", irt=["b"]), 42, new=False, people={"carol@x.test"})
    assert t.decide(mail("g", sender="carol@x.test", subject="[#42]")).request_id == 42


def test_bounce_prefers_the_outgoing_mail_it_names():
    t = threads()
    t.by_outgoing_id["out-1"] = 7
    t.by_message_id["out-1"] = 7
    dsn = ParsedMessage(from_=Address("", "mailer-daemon@mx"), automatic="bounce", bounce=Bounce("out-1", "x@y"))
    assert t.decide_bounce(dsn).request_id == 7
    assert t.decide_bounce(ParsedMessage(automatic="bounce", bounce=Bounce("nope", None))) is None
