"""Email templates of the replier: the system defaults, validation and sandboxed rendering.

A mailbox may override the system templates (DESIGN.md, "Email Templates"), and
its account name (the From name) may hold placeholders. Both are written by
administrators, so both are rendered in Jinja2's immutable sandbox with
``StrictUndefined`` (invariant 8), and both are checked when they are saved:
`validate_template` and `validate_from_name` return every problem found, in
plain words, so the admin UI/CLI can refuse the template before it ever meets
a customer's mail.

Template context (plain dicts of str/int, nothing else; `render` refuses
anything richer, so the sandbox cannot reach Python objects beyond them):

    request   id (int), tag ("[#123]", shared.tags' format), subject, status
    customer  name, address
    mailbox   name (the mailbox's own name, not the rendered From name), address
    agent     name, or None when no person acts (every auto-reply)
    message   subject, body_text: the customer's incoming mail ("" when none)
    reply     body_text: the agent's text (staff_reply only)

Names per template: see `CONTEXT_NAMES`. The account name may use `request`,
`customer`, `mailbox` and `agent`; because it is used for auto-replies too,
it must cope with `agent` being None, e.g.
``{{ agent.name if agent else mailbox.name }} at ACME``.

HTML bodies are autoescaped and have one extra filter, ``nl2br`` (escape, then
line breaks to ``<br>``), for putting plain text such as ``reply.body_text``
into HTML. Subjects and text bodies are not escaped.
"""

from __future__ import annotations

import difflib
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import StrictUndefined, meta, nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from shared.tags import tag_for

TEMPLATE_NAMES: tuple[str, ...] = ("auto_reply", "staff_reply")
PARTS: tuple[str, ...] = ("subject", "body_text", "body_html")
FROM_NAME_PART = "from_name"

# The fields of each context name; the static check refuses any other field.
FIELDS: dict[str, tuple[str, ...]] = {
    "request": ("id", "tag", "subject", "status"),
    "customer": ("name", "address"),
    "mailbox": ("name", "address"),
    "agent": ("name",),
    "message": ("subject", "body_text"),
    "reply": ("body_text",),
}
CONTEXT_NAMES: dict[str, tuple[str, ...]] = {
    "auto_reply": ("request", "customer", "mailbox", "agent", "message"),
    "staff_reply": ("request", "customer", "mailbox", "agent", "message", "reply"),
}
FROM_NAME_CONTEXT_NAMES: tuple[str, ...] = ("request", "customer", "mailbox", "agent")

_TEMPLATE_DIR = Path(__file__).with_name("email_templates")
_FILE_SUFFIX = {"subject": "subject.j2", "body_text": "txt.j2", "body_html": "html.j2"}
# Bounds for the operators the sandbox intercepts (see _Sandbox).
_MAX_REPEAT_LEN = 100_000
_MAX_EXPONENT = 64
_MAX_INT_BITS = 4096
_PADDING_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})
_WS_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class Template:
    name: str
    subject: str
    body_text: str
    body_html: str


@dataclass(frozen=True)
class TemplateProblem:
    part: str  # subject, body_text, body_html or from_name
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = self.part if self.line is None else f"{self.part}, line {self.line}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Rendered:
    subject: str
    body_text: str
    body_html: str


class RenderError(Exception):
    """A template failed at render time (a permanent error for the message)."""

    def __init__(self, problem: TemplateProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus bounds on the operators that blow up memory.

    Intercepted operators are never constant-folded at compile time, so
    ``{{ (10 ** 60) ** 60 }}`` fails at render instead of hanging the validator.
    This stops the cheap tricks, not every expensive template (string
    doubling with ``~`` in a loop is still possible): render time is bounded
    by the caller, not here.
    """

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if isinstance(left, int) and isinstance(right, int):
            if operator == "**" and (
                right > _MAX_EXPONENT or abs(left).bit_length() * right > _MAX_INT_BITS
            ):
                raise SecurityError("the result of '**' would be too large")
            if operator == "*" and abs(left).bit_length() + abs(right).bit_length() > _MAX_INT_BITS:
                raise SecurityError("the result of '*' would be too large")
        elif operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int):
                    if len(seq) * n > _MAX_REPEAT_LEN:
                        raise SecurityError("the result of '*' would be too large")
        return super().call_binop(context, operator, left, right)

    def is_safe_callable(self, obj: Any) -> bool:
        # Padding methods allocate whatever width a template asks for.
        if isinstance(getattr(obj, "__self__", None), str) and obj.__name__ in _PADDING_METHODS:
            return False
        return super().is_safe_callable(obj)


def _nl2br(value: Any) -> Markup:
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    return Markup(escape(text).replace("\n", Markup("<br>\n")))


def _make_env(html: bool) -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=html)
    # No globals (range, cycler, joiner, namespace, lipsum, dict): templates
    # need none, and without them every name a template reads is one of ours.
    env.globals.clear()
    env.filters.pop("center", None)  # unbounded padding, as above
    if html:
        env.filters["nl2br"] = _nl2br
    return env


_TEXT_ENV = _make_env(html=False)
_HTML_ENV = _make_env(html=True)


@lru_cache(maxsize=512)
def _compile(source: str, html: bool) -> jinja2.Template:
    # Compiling costs ~1 ms; the same few templates are rendered all day.
    return (_HTML_ENV if html else _TEXT_ENV).from_string(source)


# ---- system templates and contexts -----------------------------------------


@cache
def system_template(name: str) -> Template:
    """The shipped default template `name` (one of TEMPLATE_NAMES)."""
    if name not in TEMPLATE_NAMES:
        raise ValueError(f"unknown template {name!r} (known: {', '.join(TEMPLATE_NAMES)})")
    parts = {
        part: (_TEMPLATE_DIR / f"{name}.{suffix}").read_text(encoding="utf-8")
        for part, suffix in _FILE_SUFFIX.items()
    }
    return Template(name=name, **parts)


def build_context(
    *,
    request_id: int,
    request_subject: str,
    request_status: str,
    customer_name: str,
    customer_address: str,
    mailbox_name: str,
    mailbox_address: str,
    agent_name: str | None,
    message_subject: str = "",
    message_body_text: str = "",
    reply_body_text: str | None = None,
) -> dict[str, Any]:
    """The render context in the documented shape (`reply` only when given)."""
    ctx: dict[str, Any] = {
        "request": {
            "id": int(request_id),
            "tag": tag_for(request_id),
            "subject": str(request_subject),
            "status": str(request_status),
        },
        "customer": {"name": str(customer_name), "address": str(customer_address)},
        "mailbox": {"name": str(mailbox_name), "address": str(mailbox_address)},
        "agent": None if agent_name is None else {"name": str(agent_name)},
        "message": {"subject": str(message_subject), "body_text": str(message_body_text)},
    }
    if reply_body_text is not None:
        ctx["reply"] = {"body_text": str(reply_body_text)}
    return ctx


def sample_context(name: str) -> dict[str, Any]:
    """A realistic context for previews and trial renders of template `name`.

    `name` is a template name or "from_name"; auto-replies have no agent.
    """
    if name not in TEMPLATE_NAMES and name != FROM_NAME_PART:
        raise ValueError(f"unknown template {name!r}")
    staff = name == "staff_reply"
    return build_context(
        request_id=12345,
        request_subject="Printer on the 3rd floor prints blank pages",
        request_status="active",
        customer_name="Ada Lovelace",
        customer_address="ada@example.com",
        mailbox_name="ACME Support",
        mailbox_address="support@acme.example",
        agent_name="Grace Hopper" if name != "auto_reply" else None,
        message_subject="Printer on the 3rd floor prints blank pages",
        message_body_text="Hello,\n\nsince this morning the printer only prints blank pages.\n\nAda",
        reply_body_text=(
            "Hi Ada,\n\nwe replaced the toner cartridge; please try again.\n\nBest regards"
            if staff
            else None
        ),
    )


# ---- validation -------------------------------------------------------------


def _template_line(exc: BaseException) -> int | None:
    """The template line an exception was raised from (Jinja rewrites tracebacks)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == "<template>":
            line = frame.lineno
    return line


def _first_sentence(message: str | None) -> str:
    return (message or "error").strip().rstrip(".")


def _static_problems(
    source: str, part: str, html: bool, known: tuple[str, ...]
) -> list[TemplateProblem]:
    env = _HTML_ENV if html else _TEXT_ENV
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as e:
        return [TemplateProblem(part, e.lineno, _first_sentence(e.message))]

    problems: list[TemplateProblem] = []
    for node in ast.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        tag = {"Extends": "extends", "Include": "include"}.get(type(node).__name__, "import")
        problems.append(
            TemplateProblem(part, node.lineno, f"{{% {tag} %}} is not allowed (no other templates)")
        )

    # Underscore attributes are how sandbox escapes start (__class__,
    # __globals__, ...); the sandbox refuses them at render, but a branch that
    # the trial render does not take would slip through, so refuse statically.
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        attr = node.attr if isinstance(node, nodes.Getattr) else _const_str(node.arg)
        if attr is not None and attr.startswith("_"):
            problems.append(
                TemplateProblem(part, node.lineno, f"access to '{attr}' is not allowed")
            )
    for node in ast.find_all(nodes.Filter):
        attr = _const_str(node.args[0]) if node.name == "attr" and node.args else None
        if attr is not None and attr.startswith("_"):
            problems.append(
                TemplateProblem(part, node.lineno, f"access to '{attr}' is not allowed")
            )

    first_use: dict[str, int] = {}
    for node in ast.find_all(nodes.Name):
        if node.ctx == "load":
            first_use.setdefault(node.name, node.lineno)
    try:
        undeclared = meta.find_undeclared_variables(ast)
    except TemplateSyntaxError as e:  # it compiles: unknown filters and tests show here
        return [TemplateProblem(part, e.lineno, _first_sentence(e.message))]
    for name in sorted(undeclared, key=lambda n: first_use.get(n, 0)):
        if name not in known:
            problems.append(
                TemplateProblem(part, first_use.get(name), _unknown(f"name '{name}'", name, known))
            )

    # Fields of our context dicts, e.g. customer.nmae. Loop variables and
    # {% set %} names shadowing ours are rare enough to ignore here: the
    # trial render still checks what actually runs.
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        if not isinstance(node.node, nodes.Name) or node.node.name not in known:
            continue
        attr = node.attr if isinstance(node, nodes.Getattr) else _const_str(node.arg)
        fields = FIELDS[node.node.name]
        if attr is not None and not attr.startswith("_") and attr not in fields:
            what = f"field '{attr}' of '{node.node.name}'"
            problems.append(TemplateProblem(part, node.lineno, _unknown(what, attr, fields)))
    if problems:
        return sorted(problems, key=lambda p: p.line or 0)

    try:
        _compile(source, html)
    except TemplateSyntaxError as e:  # includes unknown filters and tests
        return [TemplateProblem(part, e.lineno, _first_sentence(e.message))]
    return []


def _const_str(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return node.value
    return None


def _unknown(what: str, name: str, known: tuple[str, ...]) -> str:
    hint = difflib.get_close_matches(name, known, n=1)
    did_you_mean = f"; did you mean '{hint[0]}'?" if hint else ""
    return f"unknown {what} (known: {', '.join(known)}){did_you_mean}"


def _trial_render(
    source: str, part: str, html: bool, ctx: dict[str, Any], when: str = ""
) -> TemplateProblem | None:
    try:
        _compile(source, html).render(ctx)
    except SecurityError as e:
        return TemplateProblem(
            part, _template_line(e), f"not allowed{when}: {_first_sentence(str(e))}"
        )
    except jinja2.UndefinedError as e:
        return TemplateProblem(
            part, _template_line(e), f"undefined{when}: {_first_sentence(e.message)}"
        )
    # Anything a template expression can raise (TypeError, ZeroDivisionError,
    # ...) is a template problem to report, not a crash of the validator.
    except Exception as e:
        return TemplateProblem(part, _template_line(e), f"fails{when}: {_first_sentence(str(e))}")
    return None


def validate_template(t: Template) -> list[TemplateProblem]:
    """Every problem of template `t` that should stop it from being saved."""
    if t.name not in TEMPLATE_NAMES:
        return [
            TemplateProblem("name", None, _unknown(f"template '{t.name}'", t.name, TEMPLATE_NAMES))
        ]
    known = CONTEXT_NAMES[t.name]
    problems: list[TemplateProblem] = []
    for part in PARTS:
        source = getattr(t, part)
        html = part == "body_html"
        static = _static_problems(source, part, html, known)
        problems.extend(static)
        if not static:
            trial = _trial_render(source, part, html, sample_context(t.name))
            if trial is not None:
                problems.append(trial)
    return problems


def validate_from_name(account_name: str) -> list[TemplateProblem]:
    """Problems of a mailbox's account name (From name with placeholders)."""
    problems = _static_problems(account_name, FROM_NAME_PART, False, FROM_NAME_CONTEXT_NAMES)
    if problems:
        return problems
    # The same account name serves staff replies and auto-replies, so it must
    # work with an agent and without one.
    for ctx_name, when in (
        ("staff_reply", ""),
        ("auto_reply", " on an auto-reply (agent is None)"),
    ):
        ctx = _only(sample_context(ctx_name), FROM_NAME_CONTEXT_NAMES)
        trial = _trial_render(account_name, FROM_NAME_PART, False, ctx, when)
        if trial is not None:
            return [trial]
    return []


# ---- rendering --------------------------------------------------------------

_PLAIN_SCALARS = (str, int, float, bool, type(None))


def _check_plain(value: Any, path: str) -> None:
    if isinstance(value, _PLAIN_SCALARS):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"context key {path}[{k!r}] is not a str")
            _check_plain(v, f"{path}.{k}" if path else k)
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{path}[{i}]")
        return
    raise TypeError(f"context value {path} is a {type(value).__name__}, not plain data")


def _only(ctx: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: ctx[k] for k in names if k in ctx}


def _one_line(text: str) -> str:
    return _WS_RE.sub(" ", text).strip()


def _render_part(source: str, part: str, html: bool, ctx: dict[str, Any]) -> str:
    try:
        return _compile(source, html).render(ctx)
    except TemplateSyntaxError as e:
        raise RenderError(TemplateProblem(part, e.lineno, _first_sentence(e.message))) from e
    # As in _trial_render: whatever the template raises is the template's fault.
    except Exception as e:
        raise RenderError(TemplateProblem(part, _template_line(e), _first_sentence(str(e)))) from e


def render(t: Template, ctx: dict[str, Any]) -> Rendered:
    """Render all three parts of `t`; the subject comes out as one line.

    Raises RenderError (the template's fault) or TypeError (the caller passed
    something other than plain data in `ctx`).
    """
    _check_plain(ctx, "")
    return Rendered(
        subject=_one_line(_render_part(t.subject, "subject", False, ctx)),
        body_text=_render_part(t.body_text, "body_text", False, ctx),
        body_html=_render_part(t.body_html, "body_html", True, ctx),
    )


def render_from_name(account_name: str, ctx: dict[str, Any]) -> str:
    """The mailbox's account name with its placeholders filled in, as one line.

    Only the names in FROM_NAME_CONTEXT_NAMES are visible; a missing `agent`
    counts as None (an auto-reply).
    """
    visible = _only(ctx, FROM_NAME_CONTEXT_NAMES)
    visible.setdefault("agent", None)
    _check_plain(visible, "")
    return _one_line(_render_part(account_name, FROM_NAME_PART, False, visible))


def preview(t: Template, name: str | None = None) -> Rendered:
    """`t` rendered with the sample context, for the admin UI/CLI."""
    return render(t, sample_context(name or t.name))
