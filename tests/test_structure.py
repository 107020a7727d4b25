"""The package's shape: every module says its job first, and imports run one way."""

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "ntm"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def ntm_imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(imported ntm module, whether the import is at module level) for every import."""
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        for name in names:
            if name == "ntm" or name.startswith("ntm."):
                found.append((name, id(node) in top))
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        edges[name] = {target for target, _ in ntm_imports(tree) if target != name}
    return edges


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_opens_with_its_job(name: str) -> None:
    doc = ast.get_docstring(ast.parse(MODULES[name].read_text()))
    if name == "ntm.__main__":
        return
    assert doc, f"{name} has no docstring"
    first = doc.splitlines()[0]
    assert len(first) > 20, f"{name}: the first line should say what it is for"
    assert first.endswith("."), f"{name}: the first line should be a whole sentence: {first!r}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_import_hides_in_a_function(name: str) -> None:
    tree = ast.parse(MODULES[name].read_text())
    inside = [target for target, at_top in ntm_imports(tree) if not at_top]
    assert not inside, f"{name} imports {inside} inside a function: the split is wrong"


def test_imports_run_one_way() -> None:
    """No cycle among the package's modules (the package itself only gathers names)."""
    edges = {k: v - {"ntm"} for k, v in graph().items() if k != "ntm"}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = [*path[path.index(node) :], node]
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")
        if node in done:
            return
        for target in sorted(edges.get(node, ())):
            visit(target, [*path, node])
        done.add(node)

    for node in sorted(edges):
        visit(node, [])


def reachable(start: str) -> set[str]:
    edges, seen, todo = graph(), set(), [start]
    while todo:
        node = todo.pop()
        for target in edges.get(node, ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


#: The layers, lowest first: a module may import its own layer and those below it. The tree
#: shows them: one subpackage a layer (the models' equations and settings sit below the
#: engines, their modules above).
LAYERS = (
    ("base", ("ntm.config", "ntm.registry")),
    (
        "model math",
        (
            "ntm.models.paper",
            "ntm.models.ntm.addressing",
            "ntm.models.ntm.memory",
            "ntm.models.ntm.layout",
            "ntm.models.ntm.config",
            "ntm.models.dnc.addressing",
            "ntm.models.dnc.config",
            "ntm.models.sam.addressing",
            "ntm.models.sam.config",
        ),
    ),
    ("engines", ("ntm.engines",)),
    ("models", ("ntm.models",)),
    ("tasks", ("ntm.tasks",)),
    ("runs", ("ntm.runs",)),
    ("pictures", ("ntm.pictures",)),
    ("training", ("ntm.training",)),
    ("sweeps", ("ntm.sweeps",)),
    ("command line", ("ntm.cli", "ntm.__main__")),
    ("package", ("ntm",)),
)


def layer_of(module: str) -> int:
    """The index in LAYERS of the most specific prefix that names ``module``."""
    best, found = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_has_a_layer(name: str) -> None:
    assert layer_of(name) >= 0, f"{name} is in no layer of LAYERS"


def test_imports_run_down_the_layers() -> None:
    """A module imports only from its own layer and the layers below it."""
    wrong = [
        f"{source} ({LAYERS[layer_of(source)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for source, targets in graph().items()
        for target in targets
        if layer_of(target) > layer_of(source)
    ]
    assert not wrong, "\n".join(wrong)


def test_layers() -> None:
    """The math knows nothing of modules, tasks nothing of models, runs nothing of
    training, and only the command line knows the command line."""
    math = LAYERS[1][1]
    for math_module in math:
        assert reachable(math_module) <= {"ntm.config", "ntm.registry", *math}, math_module
    for task_module in (m for m in MODULES if m.startswith("ntm.tasks")):
        assert not any(m.startswith("ntm.models") for m in reachable(task_module)), task_module
    for module in MODULES:
        if module.startswith(("ntm.runs", "ntm.pictures")):
            assert not any(m.startswith("ntm.training") for m in reachable(module)), module
    assert all(
        not any(m.startswith("ntm.cli") for m in reachable(module))
        for module in MODULES
        if not module.startswith(("ntm.cli", "ntm.__main__"))
    )
    # A sweep starts `ntm train` processes: it needs neither the trainer nor torch.distributed.
    needs = reachable("ntm.sweeps.local") | reachable("ntm.sweeps.ray_backend")
    assert not needs & {"ntm.training.trainer", "ntm.training.distributed"}
