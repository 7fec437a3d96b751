"""The layout the architecture map in docs/development.md draws, enforced: who may import whom, who reads the environment,
what the wheel holds, and the product's size."""
from __future__ import annotations

import ast
import io
import shutil
import tokenize
import zipfile
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

from tests.wheel import build_wheel


REPO = Path(__file__).resolve().parents[1]
PRODUCT_DIRS = ("slurm_sync", "tasks")
PRODUCT_FILES = ("celeryconfig.py",)
MAX_FILE_LINES = 350
MAX_PRODUCT_CODE_LINES = 6000  # 5,000 until adopt/import-config, billing and access integrity, concurrent Waldur calls

# the third-party libraries that speak to the outside world, and where they may be imported
HTTP = {"requests", "urllib3", "waldur_client"}
OUTSIDE = HTTP | {"celery", "kombu", "redis", "prometheus_client", "sentry_sdk", "subprocess"}

# folder (module prefix) -> (product modules it may import, outside libraries it may import)
RULES: Dict[str, Tuple[Set[str], Set[str]]] = {
    "slurm_sync.domain": ({"slurm_sync.domain"}, set()),
    "slurm_sync.slurm": ({"slurm_sync.domain", "slurm_sync.slurm"}, {"subprocess"}),
    "slurm_sync.waldur": ({"slurm_sync.domain", "slurm_sync.waldur"}, HTTP),
    "slurm_sync.sync": ({"slurm_sync.domain", "slurm_sync.slurm", "slurm_sync.waldur", "slurm_sync.sync",
                         "slurm_sync.observability"}, set()),
    "slurm_sync.observability": ({"slurm_sync.observability", "slurm_sync.settings"},
                                 {"prometheus_client", "sentry_sdk", "celery"}),
    "slurm_sync.settings": ({"slurm_sync.observability.masking", "slurm_sync.redis_tls"}, set()),
    "slurm_sync.redis_tls": (set(), set()),
    "slurm_sync.redis_keys": (set(), set()),
    "slurm_sync.redis_stores": ({"slurm_sync.redis_keys", "slurm_sync.waldur.generation", "slurm_sync.domain"}, set()),
    "slurm_sync.wiring": ({"slurm_sync"}, {"redis"}),
    "slurm_sync.cli": ({"slurm_sync"}, {"redis", "kombu"}),
    "tasks": ({"slurm_sync", "tasks"}, {"celery", "redis"}),
    "celeryconfig": ({"slurm_sync.settings", "slurm_sync.redis_tls"}, set()),
    "slurm_sync.__main__": ({"slurm_sync.cli"}, set()),
}
EXACT = {"slurm_sync": (set(), set())}  # the package's __init__: imports nothing
ALWAYS = {"slurm_sync", "slurm_sync.__main__"}  # the package itself and its entry point


def product_files() -> Iterator[Path]:
    for folder in PRODUCT_DIRS:
        yield from sorted((REPO / folder).rglob("*.py"))
    for name in PRODUCT_FILES:
        yield REPO / name


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[Tuple[int, str]]:
    """(line, module) of every import in the file, at any depth (a function's late import counts too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: a relative import (the map is written in absolute names)"
            yield node.lineno, node.module or ""
            for alias in node.names:  # `from slurm_sync.slurm import runner` imports slurm_sync.slurm.runner
                yield node.lineno, f"{node.module}.{alias.name}"


def rule_for(module: str) -> Tuple[Set[str], Set[str]]:
    if module in EXACT:
        return EXACT[module]
    matches = [prefix for prefix in RULES if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no folder of the architecture map (docs/development.md: Architecture)"
    return RULES[max(matches, key=len)]


def within(name: str, prefixes: Set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def is_product_module(name: str) -> bool:
    """A module of the product, as opposed to a name that only extends one (``slurm_sync.slurm.runner.X``)."""
    path = REPO / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_every_import_follows_the_architecture_map():
    broken: List[str] = []
    for path in product_files():
        module = module_name(path)
        own, libraries = rule_for(module)
        for line, name in imports(path):
            top = name.split(".")[0]
            where = f"{path.relative_to(REPO)}:{line}: {module} imports {name}"
            if top in ("testkit", "tests"):
                broken.append(f"{where} (the test kit is not part of the product)")
            elif top in ("slurm_sync", "tasks", "celeryconfig"):
                if is_product_module(name) and name not in ALWAYS and not within(name, own | {module}):
                    broken.append(where)
            elif top in OUTSIDE and top not in libraries:
                broken.append(where)
    assert not broken, "imports outside the architecture map:\n" + "\n".join(broken)


def import_cycles(modules: Dict[str, Set[str]]) -> List[List[str]]:
    """Every cycle (as a path of module names) in the graph {module: modules it imports}."""
    cycles, state, path = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for name in sorted(modules.get(module, ())):
            if state.get(name) == "open":
                cycles.append(path[path.index(name):] + [name])
            elif name not in state:
                visit(name)
        path.pop()
        state[module] = "done"

    for module in sorted(modules):
        if module not in state:
            visit(module)
    return cycles


def test_no_two_product_modules_import_each_other():
    """No import circle, at any depth (a function's late import counts): each module can be read, tested and
    changed from its own imports down."""
    graph = {}
    for path in product_files():
        found = [(line, name) for line, name in imports(path) if is_product_module(name)]
        # `from tasks import signals` imports tasks.signals, not the package's __init__ again
        graph[module_name(path)] = {name for line, name in found if name != module_name(path) and name not in ALWAYS
                                    and not any(other.startswith(name + ".") for at, other in found if at == line)}
    assert import_cycles(graph) == []
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]  # the check can fail


def test_the_map_catches_a_domain_module_that_imports_an_adapter(tmp_path):
    """The check above can fail: a domain module importing HTTP or the SLURM runner breaks the map."""
    own, libraries = rule_for("slurm_sync.domain.plan")
    assert not within("slurm_sync.slurm.runner", own) and "requests" not in libraries
    assert not within("slurm_sync.observability.metrics", own)
    own, libraries = rule_for("slurm_sync.sync.pull")
    assert "waldur_client" not in libraries and not within("slurm_sync.wiring", own)


def test_only_settings_reads_the_environment():
    """``os.environ`` / ``os.getenv`` appear in settings.py alone; metrics_server only WRITES the one variable
    prometheus_client reads (its multiprocess directory)."""
    found = []
    for path in product_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                    and node.attr in ("environ", "getenv", "environb"):
                found.append((module_name(path), node.lineno))
    assert {module for module, _ in found} == {"slurm_sync.settings", "slurm_sync.observability.metrics_server"}
    writes = [line for module, line in found if module == "slurm_sync.observability.metrics_server"]
    source = (REPO / "slurm_sync/observability/metrics_server.py").read_text().splitlines()
    assert all(source[line - 1].lstrip().startswith("os.environ[MULTIPROC_ENV] = ") for line in writes)


def code_lines(path: Path) -> int:
    """Lines holding code: not blank, not only a comment, not a docstring (as cloc counts Python)."""
    source = path.read_text()
    docstrings: Set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    lines: Set[int] = set()
    skipped = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skipped:
            lines.update(line for line in range(token.start[0], token.end[0] + 1) if line not in docstrings)
    return len(lines)


def test_code_lines_counts_code_only(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""Module\ntext."""\n\n# a comment\ndef f():\n    """Doc."""\n    return (1,\n            2)\n')
    assert code_lines(sample) == 3  # def, and the two lines of the return


def test_product_is_small_files_under_a_size_cap():
    sizes = {str(path.relative_to(REPO)): len(path.read_text().splitlines()) for path in product_files()}
    too_long = {name: n for name, n in sizes.items() if n > MAX_FILE_LINES}
    assert not too_long, f"files over {MAX_FILE_LINES} lines: {too_long}"
    code = sum(code_lines(path) for path in product_files())
    assert code < MAX_PRODUCT_CODE_LINES, f"{code} lines of product code"


def test_the_wheel_holds_the_product_only(tmp_path):
    """`pip install .` installs slurm_sync, tasks and celeryconfig; the test kit, the tests and the benchmarks
    stay in the repository (built from a copy of the repository's top level: no build files left in it)."""
    source = tmp_path / "src"
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("slurm_sync", "tasks", "testkit", "tests", "benchmarks", "scripts"):
        shutil.copytree(REPO / name, source / name, ignore=junk)
    for name in ("pyproject.toml", "setup.cfg", "README.md", "celeryconfig.py", "config-components.yaml"):
        shutil.copy2(REPO / name, source / name)
    wheel = build_wheel(source, tmp_path / "wheels")
    python = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")}
    assert {n.split("/")[0] for n in python} == {"slurm_sync", "tasks", "celeryconfig.py"}
    expected = {str(path.relative_to(REPO)) for path in product_files()}
    assert python == expected
    assert "slurm_sync/wiring.py" in python and not any(n.startswith(("testkit/", "tests/")) for n in python)


def test_every_task_has_an_explicit_name_that_operators_call():
    """`celery call tasks.pull.process_order` and the routes in celeryconfig.py name tasks by these strings: a
    task keeps its name whatever module it moves to."""
    named = {}
    for path in sorted((REPO / "tasks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:
                    call = decorator if isinstance(decorator, ast.Call) else None
                    target = call.func if call else decorator
                    if isinstance(target, ast.Attribute) and target.attr == "task":
                        names = [k.value.value for k in (call.keywords if call else []) if k.arg == "name"]
                        named[f"{module_name(path)}.{node.name}"] = names[0] if names else None
    assert len(named) >= 9
    assert all(name == qualified for qualified, name in named.items()), named
