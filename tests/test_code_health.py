"""The import graph of deeplab/: no import cycle, absl.flags only in the CLI package, and the
library never imports the CLI package."""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI_PACKAGE = "deeplab.cli"


def package_modules(root: str, package: str) -> dict:
    """{module name: file path} of every .py file of `package` under `root`."""
    modules = {}
    for folder, _, files in os.walk(os.path.join(root, package)):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, root)[: -len(".py")].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imports_of(path: str, module: str, is_package: bool, modules=()) -> set:
    """The modules the import statements in `path` name, at any depth (lazy imports inside
    functions count too). `from a import b` names the module `a.b` when `a.b` is one of
    `modules`, else `a` (b is a name defined in a's `__init__`)."""
    with open(path) as f:
        tree = ast.parse(f.read(), filename=path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                names.add(child if child in modules or base == "absl" else base)
    return names


def import_graph(root: str, package: str) -> dict:
    """{module: set of the package's modules it imports}, and {module: all names imported}."""
    modules = package_modules(root, package)
    graph, imported = {}, {}
    for module, path in modules.items():
        names = imports_of(path, module, path.endswith("__init__.py"), modules)
        imported[module] = names
        graph[module] = {name for name in names if name in modules and name != module}
    return graph, imported


def find_cycle(graph: dict):
    """One import cycle as a list of modules (first == last), or None."""
    state = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def absl_flags_importers(imported: dict) -> set:
    """Modules that import absl.flags (`from absl import flags`, `import absl.flags`, ...)."""
    return {
        module
        for module, names in imported.items()
        if any(name == "absl.flags" or name.startswith("absl.flags.") for name in names)
    }


def test_deeplab_has_no_import_cycle():
    graph, _ = import_graph(REPO, "deeplab")
    assert "deeplab.modeling.inference" in graph and "deeplab.training.trainer" in graph
    assert find_cycle(graph) is None


def test_only_the_cli_package_imports_absl_flags():
    _, imported = import_graph(REPO, "deeplab")
    importers = absl_flags_importers(imported)
    assert "deeplab.cli.flags" in importers
    assert {m for m in importers if not m.startswith(CLI_PACKAGE + ".")} == set()


def test_the_library_never_imports_the_cli_package():
    graph, _ = import_graph(REPO, "deeplab")
    library = {m: deps for m, deps in graph.items() if not m.startswith(CLI_PACKAGE)}
    # `python -m deeplab.summary` and `python -m deeplab.convert` launch their deeplab.cli module.
    for launcher in ("deeplab.summary", "deeplab.convert"):
        library.pop(launcher)
    assert {
        m: sorted(d for d in deps if d.startswith(CLI_PACKAGE))
        for m, deps in library.items()
        if any(d.startswith(CLI_PACKAGE) for d in deps)
    } == {}


@pytest.fixture
def bad_package(tmp_path):
    """A package with a cycle a -> b -> sub.c -> a and absl.flags imported outside the CLI."""
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "a.py").write_text("from pkg import b\n")
    (root / "b.py").write_text("def f():\n    from pkg.sub import c\n")
    (root / "sub" / "c.py").write_text("from .. import a\nimport absl.flags\n")
    (root / "d.py").write_text("from absl import flags, logging\n")
    (root / "e.py").write_text("from absl import logging\n")
    return tmp_path


def test_the_checks_catch_a_cycle_and_stray_flag_imports(bad_package):
    graph, imported = import_graph(str(bad_package), "pkg")
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]
    assert absl_flags_importers(imported) == {"pkg.sub.c", "pkg.d"}
    graph["pkg.sub.c"].discard("pkg.a")
    assert find_cycle(graph) is None
