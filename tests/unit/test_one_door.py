"""services/admin is the only door: the CLI, the API and the pages are adapters over it (issue 19).

Read from the source, not run: no SQL in services/cli or services/web, no
page module serving itself from an API module, and no front end reaching
past the admin layer into the domain modules or a stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRONT_ENDS = sorted([*ROOT.glob("services/cli/*.py"), *ROOT.glob("services/web/*.py")])
# What the admin layer wraps: a front end that imports these bypasses it.
BEHIND_THE_DOOR = ("shared.smtp_settings", "shared.template_store", "shared.mailboxes", "shared.broker_admin",
                   "shared.oauth2.owners", "shared.oauth2.grants", "shared.oauth2.authorize",
                   "shared.oauth2.login", "shared.templates", "shared.staff_replies", "shared.mailserver",
                   "services.fetcher", "services.ticketer", "services.replier")
# The `deskmail parse` tool prints what the parser makes of a file: no admin action.
ALLOWED = {("services/cli/pipeline.py", "services.parser.cli")}


def _imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return names


def test_front_ends_run_no_sql():
    calls = []
    for path in FRONT_ENDS:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("execute", "executemany", "copy"):
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert calls == []


def test_pages_do_not_call_the_api_modules():
    # app.py mounts every router; the others serve pages or answer the API.
    pages = [p for p in ROOT.glob("services/web/*.py") if not p.name.startswith("api_") and p.name != "app.py"]
    found = [(p.name, name) for p in pages for name in _imports(ast.parse(p.read_text()))
             if name.startswith("services.web.api_")]
    assert found == []


def test_front_ends_reach_the_domain_only_through_services_admin():
    found = []
    for path in FRONT_ENDS:
        rel = str(path.relative_to(ROOT))
        for name in _imports(ast.parse(path.read_text())):
            if any(name == m or name.startswith(m + ".") for m in BEHIND_THE_DOOR) and (rel, name) not in ALLOWED:
                found.append((rel, name))
    assert found == []
