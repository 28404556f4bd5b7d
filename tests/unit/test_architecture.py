"""The shape docs/architecture.md describes, kept: each part of jobd imports only the parts it
may (imports point inward; the edge never reaches the runtime; only the scheduler uses the
runtime contract, and only the daemon knows it is podman), jobctl imports nothing of jobd,
and modules and functions stay small enough to read."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

# What each part of jobd may import besides itself, `jobd.errors` and `jobd` (its
# __version__), as docs/architecture.md's table says. The daemon is the composition root: it
# wires everything, podman included.
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "errors": (),
    "users": (),
    "listening": (),
    "domain": (),
    "config": ("domain",),
    "store": ("domain",),
    "logs": ("config", "domain"),
    "runtime": ("domain",),
    "node": ("domain", "config"),
    "scheduler": ("domain", "store", "logs", "node", "runtime.contract", "config", "users"),
    "services": ("domain", "store", "logs", "node", "config", "users"),
    "api": ("services", "domain", "logs", "config", "users"),
    "web": ("api", "services", "domain", "logs", "config", "users"),
    "ssh": ("services", "domain", "config", "listening"),
    "systemd": ("config",),
    "daemon": ("*",),
}


def modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imported(path: Path) -> Iterator[str]:
    """Every module a file imports (at any depth, TYPE_CHECKING included), as dotted names;
    `from a import b` yields a.b, which may name a module or something in a."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def part_of(module: str) -> str:
    """jobd.scheduler.launch -> scheduler; jobd.runtime.podman.client -> runtime.podman."""
    parts = module.split(".")[1:]
    if parts[:1] == ["runtime"] and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0] if parts else "jobd"


def allowed(importer: str, target: str) -> bool:
    own = importer.split(".", maxsplit=1)[0]
    if target in ("jobd", "errors") or target.split(".", maxsplit=1)[0] == own:
        return True
    rules = MAY_IMPORT[own]
    return "*" in rules or any(target == r or target.startswith(r + ".") for r in rules)


def jobd_imports() -> Iterator[tuple[str, str]]:
    for module, path in modules("jobd"):
        for name in imported(path):
            if name == "jobd" or name.startswith("jobd."):
                yield module, part_of(name) if name != "jobd.__version__" else "jobd"


def test_every_part_of_jobd_has_a_rule() -> None:
    parts = {part_of(module).split(".")[0] for module, _ in modules("jobd")} - {"jobd"}
    assert parts == set(MAY_IMPORT), "a new package needs its line in docs/architecture.md"


def test_imports_point_inward() -> None:
    wrong = sorted(
        f"{module} imports jobd.{target}"
        for module, target in jobd_imports()
        if not allowed(part_of(module), target)
    )
    assert wrong == []


def test_the_rules_catch_what_they_forbid() -> None:
    assert not allowed("api", "runtime.contract")
    assert not allowed("api", "store")
    assert not allowed("scheduler", "runtime.podman")
    assert not allowed("services", "scheduler")
    assert not allowed("domain", "store")
    assert not allowed("ssh", "runtime.podman")
    assert not allowed("ssh", "api")
    assert allowed("scheduler", "runtime.contract")
    assert allowed("runtime.podman", "runtime.contract")
    assert allowed("daemon", "runtime.podman")


def test_jobctl_is_a_client_of_the_api_only() -> None:
    wrong = sorted(
        f"{module} imports {name}"
        for module, path in modules("jobctl")
        for name in imported(path)
        if name == "jobd" or name.startswith("jobd.")
    )
    assert wrong == []


@pytest.mark.parametrize("package", ["jobd", "jobctl"])
def test_modules_and_functions_stay_small(package: str) -> None:
    too_big = []
    for module, path in modules(package):
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            too_big.append(f"{module}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([d.lineno for d in node.decorator_list] + [node.lineno])
                length = (node.end_lineno or node.lineno) - first + 1
                if length > MAX_FUNCTION_LINES:
                    too_big.append(f"{module}.{node.name}: {length} lines")
    assert too_big == []
