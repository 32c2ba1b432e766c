"""The package's shape: stages as sub-packages that import only what their layer may, no import
cycles, torch-free orchestration, and every docstring example (closed forms) true."""

import ast
import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def module_files() -> dict[str, Path]:
    out = {}
    for p in (SRC / "shiftcurv").rglob("*.py"):
        rel = p.relative_to(SRC).with_suffix("")
        out[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = p
    return out


MODULES = module_files()


def imports_of(name: str) -> set[str]:
    """The shiftcurv modules `name` imports anywhere (top level or inside functions): a lazy
    import is still a dependency."""
    out = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.startswith("shiftcurv"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("shiftcurv."))
    return out - {name, "shiftcurv"}


GRAPH = {name: imports_of(name) for name in MODULES}


def test_no_import_cycles():
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(GRAPH.get(u, ())):
            if state.get(v) == 1:
                cycles.append(" -> ".join(stack[stack.index(v):] + [v]))
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for u in sorted(GRAPH):
        if u not in state:
            visit(u)
    assert not cycles, cycles


# what each stage may import (README, "Layout"): the pipeline reads top to bottom
ALLOWED = {
    "config": {"sweep", "data", "models"},  # the checks look names up in the registries
    "sweep": {"plots"},  # figure names, for the plan
    "data": {"io"},
    "models": set(),
    "train": {"sweep"},  # the temperature and the epoch budget
    "landscape": {"config"},  # the measures' names and default options
    "eq4": {"sweep", "train", "landscape"},  # training's batch order; objectives, HVPs
    "synthetic": {"config", "io"},
    "results": {"sweep", "io"},
    "plots": {"sweep", "results", "landscape", "io"},  # landscape.line: numpy only
    "io": set(),
    "progress": set(),
    "commands": None,  # the CLI steps: anything
    "cli": {"commands"},
}


def stage(module: str) -> str:
    return module.split(".")[1]


def test_stages_import_only_what_their_layer_may():
    wrong = [f"{a} imports {b}" for a, bs in GRAPH.items() for b in bs
             if stage(a) != stage(b) and ALLOWED[stage(a)] is not None
             and stage(b) not in ALLOWED[stage(a)]]
    assert not wrong, wrong
    assert set(ALLOWED) == {stage(m) for m in MODULES if m != "shiftcurv"}


TORCH_FREE = ("config", "sweep", "results", "plots", "io", "progress")


def test_torch_free_stages_never_import_torch():
    """The Snakefile (parse time), gather, plots, plan and status import these: importing torch
    there costs ~1.6 s per process and pulls CUDA on a GPU node."""
    names = sorted(m for m in MODULES if m != "shiftcurv" and stage(m) in TORCH_FREE)
    names.append("shiftcurv.landscape.line")  # what plots use of the landscape: numpy only
    code = ("import sys\n" + "".join(f"import {n}\n" for n in names)
            + "bad = [m for m in ('torch', 'pytorch_lightning') if m in sys.modules]\n"
            + "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"torch-free stages imported {out.stdout.strip()}"
    assert len(names) > 15


@pytest.mark.parametrize("name", sorted(n for n, p in MODULES.items() if ">>>" in p.read_text()))
def test_docstring_examples(name):
    """Closed-form examples in docstrings (line.symmetrized_fit, temperature.epoch_budget, the
    trace estimators, ...) are run and must hold."""
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
