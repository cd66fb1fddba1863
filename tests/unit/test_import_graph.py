"""The house's structure (issue 19): no import cycles, and each room imports only what it may.

The graph is read from the source with `ast`, every import statement counted
wherever it stands (inside functions and `if TYPE_CHECKING:` too: a lazy
import is still a dependency, and a cycle through one is still a cycle).

    a stage (services/fetcher, parser, ticketer, replier) imports its own package,
        services.app (the core), services.stages (where it registers) and shared/;
        never another stage, admin, the web or the CLI: stages meet only
        through queues and the database
    services/admin imports itself, services.app and shared/; never a stage
    shared/ imports only shared/
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP = ("services", "shared")
STAGES = ("fetcher", "parser", "ticketer", "replier")
CORE = ("services.app", "services.stages")


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under root's services/ and shared/."""
    found = {}
    for top in TOP:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path, tree: ast.AST, known: set[str]) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..a import b
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import mod` imports the module pkg.mod when there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            # `import a.b.c` of a name that is not a module of ours: its longest known prefix.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of services/ and shared/ it imports."""
    found = modules(root)
    known = set(found)
    return {name: set(_imported(name, path, ast.parse(path.read_text(), str(path)), known))
            for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # the graph is a few hundred modules: recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _room(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "shared":
        return "shared"
    if len(parts) > 1 and parts[1] in STAGES:
        return f"stage:{parts[1]}"
    if len(parts) > 1 and parts[1] == "admin":
        return "admin"
    return module if module in CORE else "other"


def _may_import(importer: str, imported: str) -> bool:
    room, target = _room(importer), _room(imported)
    if room == "shared":
        return target == "shared"
    if room.startswith("stage:"):
        return target in (room, "shared") or imported in CORE
    if room == "admin":
        return target in ("admin", "shared") or imported == "services.app"
    return True


def forbidden(graph: dict[str, set[str]]) -> list[str]:
    return [f"{a} imports {b}" for a in sorted(graph) for b in sorted(graph[a]) if not _may_import(a, b)]


def _write(root: Path, files: Iterable[tuple[str, str]]) -> None:
    for rel, text in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# -- the checks on the product --------------------------------------------------------


def test_the_graph_is_read_from_the_product() -> None:
    graph = import_graph(ROOT)
    # Known edges, one of each import form: if the reader lost them, the checks below would pass on nothing.
    assert "shared.mailserver.remote" in graph["services.fetcher.poll"]  # from a.b import c (names)
    assert "services.fetcher.store" in graph["services.fetcher.poll"]  # from package import module
    assert "shared.mailserver.imap" in graph["shared.mailserver.connect"]  # inside a function
    assert "services.app" in graph["services.stages"]  # under `if TYPE_CHECKING:`
    assert len(graph) > 100 and sum(map(len, graph.values())) > 300


def test_no_import_cycles() -> None:
    assert cycles(import_graph(ROOT)) == []


def test_no_stage_imports_another_stage_and_admin_imports_no_stage() -> None:
    assert forbidden(import_graph(ROOT)) == []


# -- the checker itself fails when it should -------------------------------------------


def test_a_cycle_through_a_lazy_import_is_found(tmp_path: Path) -> None:
    _write(tmp_path, [
        ("shared/__init__.py", ""),
        ("shared/a.py", "from shared import b\n"),
        ("shared/b.py", "def f():\n    from shared.c import x\n"),
        ("shared/c.py", "from .a import y\n"),
        ("shared/d.py", "import shared.a\n"),
    ])
    assert cycles(import_graph(tmp_path)) == [["shared.a", "shared.b", "shared.c"]]


def test_a_stage_reaching_into_another_or_admin_into_a_stage_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, [
        ("services/__init__.py", ""),
        ("services/app.py", "from shared import settings\n"),
        ("services/fetcher/__init__.py", ""),
        ("services/fetcher/lease.py", "from services.app import App\nfrom shared.settings import x\n"),
        ("services/replier/__init__.py", ""),
        ("services/replier/smtp.py", "from services.fetcher import lease\n"),
        ("services/admin/__init__.py", ""),
        ("services/admin/mailboxes.py", "def f():\n    from services.fetcher.lease import KEEP\n"),
        ("services/cli/__init__.py", ""),
        ("services/cli/run.py", "from services.fetcher import lease\n"),  # the CLI may run stages
        ("shared/__init__.py", ""),
        ("shared/settings.py", "import services.admin.mailboxes\n"),
    ])
    assert forbidden(import_graph(tmp_path)) == [
        "services.admin.mailboxes imports services.fetcher.lease",
        "services.replier.smtp imports services.fetcher.lease",
        "shared.settings imports services.admin.mailboxes",
    ]
