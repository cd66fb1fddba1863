"""Replier templates: system defaults, validation at save time, sandboxed rendering."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shared.templates import (
    CONTEXT_NAMES,
    FIELDS,
    TEMPLATE_NAMES,
    RenderError,
    Template,
    build_context,
    render,
    render_from_name,
    sample_context,
    system_template,
    validate_from_name,
    validate_template,
)


def _ctx(**overrides: object) -> dict:
    args = dict(
        request_id=123,
        request_subject="Printer on fire",
        request_status="active",
        customer_name="Ada Lovelace",
        customer_address="ada@example.com",
        mailbox_name="ACME Support",
        mailbox_address="support@acme.example",
        agent_name=None,
        message_subject="Printer on fire",
        message_body_text="It burns.",
    )
    args.update(overrides)
    return build_context(**args)  # type: ignore[arg-type]


def _tpl(name: str = "auto_reply", **parts: str) -> Template:
    base = dict(subject="{{ request.tag }}", body_text="text", body_html="<p>html</p>")
    base.update(parts)
    return Template(name=name, **base)


# ---- system templates -------------------------------------------------------


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_system_templates_are_valid(name: str):
    t = system_template(name)
    assert t.name == name
    assert t.subject and t.body_text and t.body_html
    assert validate_template(t) == []


def test_auto_reply_says_thanks_number_subject_and_soon():
    r = render(system_template("auto_reply"), _ctx())
    assert r.subject == "[#123] Printer on fire"
    for body in (r.body_text, r.body_html):
        assert "thank you" in body.lower()
        assert "[#123]" in body
        assert "Printer on fire" in body
        assert "Ada Lovelace" in body
        assert "as soon as we can" in body


def test_staff_reply_carries_agent_text_name_and_number():
    ctx = _ctx(agent_name="Grace Hopper", reply_body_text="Try turning it off.\nThen on.")
    r = render(system_template("staff_reply"), ctx)
    assert r.subject == "Re: Printer on fire [#123]"
    assert "Try turning it off.\nThen on." in r.body_text
    assert "Grace Hopper" in r.body_text and "[#123]" in r.body_text
    assert "Try turning it off.<br>\nThen on." in r.body_html
    assert "Grace Hopper" in r.body_html


def test_unknown_system_template():
    with pytest.raises(ValueError, match="unknown template"):
        system_template("nope")


def test_template_files_are_shipped_beside_the_module():
    import shared.templates as mod

    folder = Path(mod.__file__).with_name("email_templates")
    for name in TEMPLATE_NAMES:
        for suffix in ("subject.j2", "txt.j2", "html.j2"):
            assert (folder / f"{name}.{suffix}").is_file()


# ---- context ------------------------------------------------------------------


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_sample_context_has_exactly_the_documented_shape(name: str):
    ctx = sample_context(name)
    assert set(ctx) == set(CONTEXT_NAMES[name])
    for key, value in ctx.items():
        if value is not None:
            assert set(value) == set(FIELDS[key]), key
    assert (ctx["agent"] is None) == (name == "auto_reply")


def test_render_refuses_objects_in_the_context():
    class Request:
        id = 1

    ctx = _ctx()
    ctx["request"] = Request()
    with pytest.raises(TypeError, match="request"):
        render(system_template("auto_reply"), ctx)


# ---- rendering --------------------------------------------------------------


def test_subject_is_rendered_to_one_line():
    t = _tpl(subject="  {{ request.tag }}\n{{ request.subject }}\r\n  ")
    r = render(t, _ctx(request_subject="two\nlines\there"))
    assert r.subject == "[#123] two lines here"


def test_html_body_is_escaped_and_text_body_is_not():
    t = _tpl(body_text="{{ customer.name }}", body_html="<p>{{ customer.name }}</p>")
    r = render(t, _ctx(customer_name="<script>alert(1)</script> & co"))
    assert r.body_text == "<script>alert(1)</script> & co"
    assert r.body_html == "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</p>"


def test_nl2br_escapes_before_breaking_lines():
    t = _tpl("staff_reply", body_html="{{ reply.body_text|nl2br }}")
    r = render(t, _ctx(agent_name="G", reply_body_text="a<b>\r\nc"))
    assert r.body_html == "a&lt;b&gt;<br>\nc"


def test_undefined_name_is_an_error_at_render():
    with pytest.raises(RenderError) as info:
        render(_tpl(body_text="{{ nobody }}"), _ctx())
    assert info.value.problem.part == "body_text"


def test_missing_agent_on_auto_reply_is_an_error_not_an_empty_string():
    with pytest.raises(RenderError, match="no attribute 'name'"):
        render(_tpl(subject="{{ agent.name }}"), _ctx(agent_name=None))


# ---- validation -------------------------------------------------------------


def test_syntax_error_has_part_line_and_plain_reason():
    problems = validate_template(_tpl(body_html="<p>\n{{ customer.name } }</p>"))
    assert len(problems) == 1
    p = problems[0]
    assert (p.part, p.line, p.reason) == ("body_html", 2, "unexpected '}'")


def test_unknown_name_is_reported_with_known_names_and_a_hint():
    problems = validate_template(_tpl(body_text="Hello\n\n{{ custmer.name }}"))
    assert len(problems) == 1
    p = problems[0]
    assert p.part == "body_text" and p.line == 3
    assert "unknown name 'custmer'" in p.reason
    assert "known: request, customer, mailbox, agent, message" in p.reason
    assert "did you mean 'customer'" in p.reason


def test_reply_is_unknown_in_auto_reply_but_known_in_staff_reply():
    body = "{{ reply.body_text }}"
    assert validate_template(_tpl("staff_reply", body_text=body)) == []
    problems = validate_template(_tpl("auto_reply", body_text=body))
    assert [p.reason.split(" (")[0] for p in problems] == ["unknown name 'reply'"]


def test_unknown_field_is_reported():
    problems = validate_template(_tpl(subject="{{ customer.nmae }}"))
    assert len(problems) == 1
    assert "unknown field 'nmae' of 'customer'" in problems[0].reason


def test_set_and_loop_variables_are_not_unknown_names():
    body = "{% set who = customer.name %}{% for w in who.split() %}{{ w }}{% endfor %}"
    assert validate_template(_tpl(body_text=body)) == []


def test_unknown_filter_is_reported():
    problems = validate_template(_tpl(subject="{{ request.tag|shout }}"))
    assert len(problems) == 1
    assert "shout" in problems[0].reason


def test_trial_render_catches_agent_on_auto_reply():
    problems = validate_template(_tpl(body_text="\n{{ agent.name }}"))
    assert len(problems) == 1
    assert problems[0].line == 2 and "undefined" in problems[0].reason


@pytest.mark.parametrize(
    "source", ['{% include "x" %}', '{% extends "x" %}', '{% import "x" as y %}']
)
def test_loading_other_templates_is_refused(source: str):
    problems = validate_template(_tpl(body_text=source))
    assert problems and "not allowed" in problems[0].reason


def test_every_part_is_validated():
    t = _tpl(subject="{{ a }}", body_text="{{ b }}", body_html="{{ c }}")
    assert [p.part for p in validate_template(t)] == ["subject", "body_text", "body_html"]


def test_problem_reads_as_plain_words():
    p = validate_template(_tpl(subject="{{ a }}"))[0]
    assert str(p).startswith("subject, line 1: unknown name 'a'")


# ---- the sandbox --------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ request.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ request['__class__'] }}",
    "{{ request|attr('__class__') }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ '{0.__class__.__mro__}'.format(request) }}",
    "{{ request.update({'id': 1}) }}",
    "{{ range(10) }}",
    "{{ 'a' * 1000000000 }}",
    "{{ 10 ** 100000 }}",
    "{{ (10 ** 60) ** 60 }}",
    "{% set n = 10 ** 60 %}" + "{% set n = n * n %}" * 5 + "{{ n }}",
    "{{ 'x'.ljust(999999999) }}",
    "{{ ''|center(999999999) }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_escape_attempts_are_refused_at_validation(source: str):
    for part in ("subject", "body_text", "body_html"):
        assert validate_template(_tpl(**{part: source})), part


@pytest.mark.parametrize("source", ESCAPES)
def test_escape_attempts_cannot_execute_at_render(source: str):
    with pytest.raises(RenderError):
        render(_tpl(body_text=source), _ctx())


def test_dict_methods_are_not_fields():
    # Harmless at render (read-only), but not part of the documented context.
    problems = validate_template(_tpl(body_text="{{ request.items() }}"))
    assert problems and "unknown field 'items'" in problems[0].reason


def test_escape_hidden_in_an_untaken_branch_is_still_refused():
    t = _tpl(body_text="{% if false %}{{ request.__class__ }}{% endif %}")
    assert validate_template(t)


def test_no_side_effect_reaches_the_system(tmp_path: Path):
    marker = tmp_path / "pwned"
    source = "{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}"
    with pytest.raises(RenderError):
        render(_tpl(body_text=source), _ctx())
    source = "{{ ''.__class__.__mro__[1].__subclasses__()[0]('touch " + str(marker) + "') }}"
    with pytest.raises(RenderError):
        render(_tpl(body_text=source), _ctx())
    assert not marker.exists()


def test_context_cannot_be_modified_by_a_template():
    ctx = _ctx()
    with pytest.raises(RenderError):
        render(_tpl(body_text="{{ request.pop('id') }}"), ctx)
    assert ctx["request"]["id"] == 123


# ---- the From name ------------------------------------------------------------


def test_from_name_without_placeholders_is_kept():
    assert validate_from_name("ACME Support") == []
    assert render_from_name("ACME Support", _ctx()) == "ACME Support"


def test_from_name_with_agent_and_fallback():
    name = "{{ agent.name if agent else mailbox.name }} at ACME"
    assert validate_from_name(name) == []
    assert render_from_name(name, _ctx(agent_name="Grace Hopper")) == "Grace Hopper at ACME"
    assert render_from_name(name, _ctx(agent_name=None)) == "ACME Support at ACME"


def test_from_name_missing_agent_key_counts_as_auto_reply():
    ctx = _ctx(agent_name="G")
    del ctx["agent"]
    assert render_from_name("{{ agent.name if agent else 'Support' }}", ctx) == "Support"


def test_from_name_that_breaks_on_auto_replies_is_refused():
    problems = validate_from_name("{{ agent.name }} at ACME")
    assert len(problems) == 1
    assert problems[0].part == "from_name"
    assert "auto-reply" in problems[0].reason


def test_from_name_only_sees_its_names():
    problems = validate_from_name("{{ reply.body_text }}")
    assert problems and "unknown name 'reply'" in problems[0].reason
    assert "known: request, customer, mailbox, agent" in problems[0].reason


def test_from_name_is_one_line_even_if_the_agent_name_is_not():
    name = "{{ agent.name if agent else mailbox.name }}"
    assert render_from_name(name, _ctx(agent_name="Grace\r\nBcc: x@y")) == "Grace Bcc: x@y"


@pytest.mark.parametrize("source", ESCAPES)
def test_from_name_sandbox(source: str):
    assert validate_from_name(source)
    with pytest.raises(RenderError):
        render_from_name(source, _ctx(agent_name="G"))


def test_validate_unknown_template_name():
    problems = validate_template(replace(_tpl(), name="weekly_digest"))
    assert problems and "unknown template" in problems[0].reason
