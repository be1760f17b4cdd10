"""Repository conventions (issue #13): a lint-clean workflow, a licence, a documented config
catalogue, and declared dependencies that match what the code imports."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SNAKEMAKE = [str(BIN / "snakemake")] if (BIN / "snakemake").exists() else [sys.executable, "-m", "snakemake"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# distribution name -> the module it is imported as, where they differ
IMPORT_NAME = {"scikit-learn": "sklearn", "pyyaml": "yaml", "markdown-it-py": "markdown_it"}


def dist_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def module_of(requirement: str) -> str:
    name = dist_name(requirement)
    return IMPORT_NAME.get(name, name.replace("-", "_"))


def imported_modules(files) -> set[str]:
    """Top-level names of every absolute import in the given Python files."""
    names = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def workflow_imports() -> set[str]:
    """Imports of the Snakefile and workflow/ (.smk files are not Python: scanned by line)."""
    names = imported_modules((ROOT / "workflow").rglob("*.py"))
    for path in [ROOT / "Snakefile", *(ROOT / "workflow").rglob("*.smk")]:
        names.update(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", path.read_text(), re.M))
    return names


def test_snakemake_lint_is_clean(tmp_path: Path):
    r = subprocess.run([*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--lint"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Lints for" not in out, out


def test_license_is_mit():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the tssm-bench authors" in text
    assert "WITHOUT WARRANTY OF ANY KIND" in text
    assert PYPROJECT["license"] == {"text": "MIT"}


def test_every_config_is_described_in_the_catalogue():
    catalogue = (ROOT / "config" / "README.md").read_text()
    configs = sorted(p.name for p in (ROOT / "config").glob("*.yaml"))
    assert "config.yaml" in configs and "schema.yaml" in configs
    missing = [name for name in configs if f"`{name}`" not in catalogue]
    assert not missing, f"config/README.md does not describe {missing}"
    # and it names no configuration that is not there
    named = set(re.findall(r"`([\w.-]+\.yaml)`", catalogue)) - {"tiny.yaml", "<file>.yaml"}
    assert named <= set(configs), named - set(configs)


def test_catalogue_example_is_a_valid_config():
    catalogue = (ROOT / "config" / "README.md").read_text()
    example = yaml.safe_load(re.search(r"```yaml\n(.*?)```", catalogue, re.S).group(1))
    assert example["name"] == "tiny" and example["experiments"][0]["grid"] == {"rho": [1, 10]}
    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
    assert set(example) <= set(schema["properties"])
    assert set(example["experiments"][0]) <= set(schema["$defs"]["experiment"]["properties"])


def test_dependencies_are_imported_by_the_package():
    """Each runtime dependency is imported somewhere in tssm/ (nothing declared for nothing)."""
    used = imported_modules((ROOT / "tssm").rglob("*.py"))
    unused = [req for req in PYPROJECT["dependencies"] if module_of(req) not in used]
    assert not unused, f"declared but not imported in tssm/: {unused}"


def test_package_imports_are_declared():
    """The reverse: every third-party module tssm/ imports is a declared dependency."""
    used = imported_modules((ROOT / "tssm").rglob("*.py"))
    declared = {module_of(req) for req in PYPROJECT["dependencies"]}
    third_party = used - set(sys.stdlib_module_names) - {"tssm", "__future__"}
    assert third_party <= declared, f"imported in tssm/ but not declared: {sorted(third_party - declared)}"


def test_pipeline_extra_is_what_the_workflow_imports():
    extras = PYPROJECT["optional-dependencies"]
    pipeline = extras["pipeline"]
    assert {dist_name(r) for r in pipeline} == {"snakemake", "markdown-it-py"}
    assert all(module_of(r) in workflow_imports() for r in pipeline)
    # `pip install -e '.[test]'` is the README's command for both the pipeline and the tests
    assert {dist_name(r) for r in pipeline} | {"pytest"} <= {dist_name(r) for r in extras["test"]}
    assert "snakemake" not in {dist_name(r) for r in PYPROJECT["dependencies"]}


def test_rule_env_has_what_the_rules_import():
    """envs/tssm.yaml (the rules' env under --sdm conda) has every runtime dependency and the
    workflow scripts' own imports."""
    env = yaml.safe_load((ROOT / "envs" / "tssm.yaml").read_text())
    pip = {dist_name(r) for r in next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))}
    assert {dist_name(r) for r in PYPROJECT["dependencies"]} <= pip
    scripts = imported_modules((ROOT / "workflow" / "scripts").glob("*.py"))
    third_party = scripts - set(sys.stdlib_module_names) - {"tssm", "__future__"}
    assert third_party <= {module_of(r) for r in pip}, third_party


def _import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (any import statement, lazy ones included)."""
    import ast

    mods = {".".join(f.relative_to(package.parent).with_suffix("").parts[:-1] if f.name == "__init__.py"
                     else f.relative_to(package.parent).with_suffix("").parts): f for f in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, f in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = name.split(".")[: len(name.split(".")) - node.level + (f.name == "__init__.py")] if node.level else []
                prefix = ".".join(base + ([node.module] if node.module else []))
                targets = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def test_the_package_has_no_import_cycles():
    """Every import inside tssm points one way: no path of imports (lazy ones included) leads
    from a module back to itself. At bb3c409 this listed 2 cycles (config/presets/tuning/summary/
    solvers and run/checkpoint)."""
    graph = _import_graph(ROOT / "tssm")
    cycles = []

    def visit(node, path):
        for dep in graph[node]:
            if dep == path[0]:
                cycles.append(" -> ".join(path + [dep]))
            elif dep not in path and len(path) < 12 and dep > path[0]:
                visit(dep, path + [dep])

    for start in graph:
        visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles)[:10])
