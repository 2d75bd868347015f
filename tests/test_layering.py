"""The import graph points one way: a module imports only modules of its own layer or lower ones.

Every import counts, also the lazy ones inside functions (they are how upward edges hide). Run
`python tests/test_layering.py` to print every upward edge and every name of an engine or a
scheduler outside its plug-in folder.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LAYERS: tuple[tuple[str, ...], ...] = (
    # 0: shared by everything: errors and checks, atomic files, signals, device timing, progress, datasheet peaks,
    # time-to-accuracy bookkeeping, how engines bucket gradients
    ("hpcbench", "hpcbench.errors", "hpcbench.files", "hpcbench.guard", "hpcbench.timing", "hpcbench.progress",
     "hpcbench.peaks", "hpcbench.convergence", "hpcbench.buckets"),
    # 1: what a run is and where it runs: the config, the scheduler environments, the rank table
    ("hpcbench.config", "hpcbench.launch.schedulers", "hpcbench.engines.discovery", "hpcbench.datafiles"),
    # 2: the record format and its provenance
    ("hpcbench.provenance", "hpcbench.records"),
    # 3: the plug-ins the loop is made of
    ("hpcbench.engines", "hpcbench.workloads", "hpcbench.measurements", "hpcbench.training", "hpcbench.modes"),
    # 4: config resolution, flags and sweep matrices, which need the plug-ins' options and defaults
    ("hpcbench.resolve", "hpcbench.flags", "hpcbench.matrix"),
    # 5: the programs a rank runs, and the read side
    ("hpcbench.runner", "hpcbench.probes", "hpcbench.peak", "hpcbench.analysis"),
    # 6: starting them: local processes, job scripts, sweeps, the worker entry point
    ("hpcbench.worker", "hpcbench.launch", "hpcbench.sweep"),
    # 7: the command line
    ("hpcbench.cli", "hpcbench.cli_results", "hpcbench.cli_data", "hpcbench.cli_probes", "hpcbench.cli_cluster",
     "hpcbench.__main__", "hpcbench.install_horovod"),
)


def layer_of(module: str) -> int | None:
    """The layer of the longest listed prefix of `module` (None: not ours)."""
    best: tuple[int, int] | None = None
    for number, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), number)
    return best[1] if best else None


def module_name(path: Path) -> str:
    """hpcbench/x/y.py -> hpcbench.x.y; analysis/z.py -> hpcbench.analysis.z (its installed name)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "analysis":
        parts = ["hpcbench", *parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every hpcbench module `path` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from hpcbench.x import y` imports y when y is a module, else hpcbench.x
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return {name for name in found if name.split(".")[0] == "hpcbench"}


def source_files() -> list[Path]:
    return sorted([*ROOT.glob("hpcbench/**/*.py"), *ROOT.glob("analysis/**/*.py")])


def known_modules() -> set[str]:
    return {module_name(path) for path in source_files()}


def upward_edges() -> list[tuple[str, str]]:
    modules = known_modules()
    edges = []
    for path in source_files():
        importer = module_name(path)
        for imported in sorted(imports_of(path) & modules):
            low, high = layer_of(importer), layer_of(imported)
            if low is not None and high is not None and high > low:
                edges.append((importer, imported))
    return edges


PLUGIN_NAMES = {
    "engine": (re.compile(r"""["'](ddp|horovod)["']|\bhvd[._]"""), "hpcbench/engines/"),
    "scheduler": (re.compile(r"""["'](slurm|pbspro|torque|pbs)["']|\bsbatch\b|\bqsub\b|\bSLURM_|\bPBS_"""),
                  "hpcbench/launch/schedulers/"),
}
"""A plug-in's name (as a string in code) or its commands and variables, outside its own folder."""
NAME_ALLOWED = {
    ("engine", "hpcbench/config.py"): "the default engine: a value, not a branch",
    ("engine", "hpcbench/records.py"): "reads schema-1 records, which held Horovod's options as flat hvd_* fields",
}


def names_outside_plugins() -> list[tuple[str, str, int, str]]:
    found = []
    for path in source_files():
        relative = path.relative_to(ROOT).as_posix()
        for kind, (pattern, home) in PLUGIN_NAMES.items():
            if relative.startswith(home) or (kind, relative) in NAME_ALLOWED:
                continue
            if kind == "scheduler" and relative == "hpcbench/engines/discovery.py":
                continue  # the rank table reads launchers' variables, srun's among them: that is its job
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if pattern.search(code):
                    found.append((kind, relative, number, line.strip()))
    return found


def test_no_module_imports_a_higher_layer():
    assert upward_edges() == []


def test_every_module_has_a_layer():
    assert [m for m in sorted(known_modules()) if layer_of(m) is None] == []


def test_no_engine_or_scheduler_is_named_outside_its_folder():
    assert names_outside_plugins() == []


def test_the_checker_sees_an_upward_edge(tmp_path, monkeypatch):
    """A checker that cannot fail proves nothing: plant a lazy upward import and expect it found."""
    fake = tmp_path / "hpcbench"
    fake.mkdir()
    (fake / "config.py").write_text("def f():\n    from hpcbench.workloads import registry\n")
    (fake / "workloads.py").write_text("from hpcbench.config import f\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert upward_edges() == [("hpcbench.config", "hpcbench.workloads")]


def test_every_package_ships():
    """A plug-in folder left out of pyproject's package list works from a checkout and is missing from a wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {module_name(init) for init in ROOT.glob("hpcbench/**/__init__.py")} | {"hpcbench.analysis", "hpcbench.jobs"}
    assert found - listed == set()


if __name__ == "__main__":
    edges = upward_edges()
    print(f"{len(edges)} upward import edge(s):")
    for importer, imported in edges:
        print(f"  {importer} (layer {layer_of(importer)}) -> {imported} (layer {layer_of(imported)})")
    names = names_outside_plugins()
    print(f"{len(names)} line(s) naming an engine or scheduler outside its folder:")
    for kind, relative, number, line in names:
        print(f"  [{kind}] {relative}:{number}: {line[:110]}")

