"""The project's walls: the server side never loads MLX, inference never imports monitoring, the
product never imports the benchmarks, and mlx-lm's internals are touched in one package only."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.lmx_server import ROOT

SERVER_SIDE = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lmx_site.settings")
import django
django.setup()
import lmx_site.asgi, lmx_site.routing, lmx_site.urls
import inference.api.admin, inference.api.openai, inference.api.probes
import inference.api.retrieval, inference.api.websocket
import inference.services, inference.serving, inference.memory, inference.retrieval
import inference.runtime, inference.shutdown, inference.daphne_server
import inference.client.process, inference.management.commands.lmx_serve
import monitoring.consumers, monitoring.ticker, monitoring.metrics, monitoring.inventory, monitoring.admin
import inference.gguf.inspect, inference.gguf.archs; inference.gguf.archs.supported()  # the store reads GGUF
print(sorted(m for m in sys.modules if m.split(".")[0] in ("mlx", "mlx_lm")))
print(sorted(m for m in sys.modules if m.startswith("inference.engine")))
"""


def test_importing_the_whole_server_side_loads_no_mlx_module():
    done = subprocess.run([sys.executable, "-c", SERVER_SIDE], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    mlx_modules, engine_modules = done.stdout.strip().splitlines()
    assert mlx_modules == "[]"
    assert engine_modules == "[]"  # the engine package is the engine process's alone


def _imports(folder: str) -> dict[str, set[str]]:
    """Every module each Python file under `folder` imports (at any depth, in functions too)."""
    found = {}
    for path in (ROOT / folder).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def _offenders(folders: list[str], prefix: str) -> list[str]:
    return [
        f"{path}: {name}"
        for folder in folders
        for path, names in _imports(folder).items()
        for name in names
        if name == prefix or name.startswith(prefix + ".")
    ]


def test_inference_and_the_project_never_import_monitoring():
    """Monitoring listens: the project gathers its routes and URLs by name, inference signals."""
    assert _offenders(["inference", "lmx_site"], "monitoring") == []


def test_the_product_never_imports_the_benchmarks():
    assert _offenders(["inference", "monitoring", "lmx_site"], "benchmarks") == []


def test_mlx_lm_internals_are_touched_only_in_mlx_compat():
    """Private attributes of mlx-lm objects, class swaps and patches of MLX live in one package."""
    marks = (
        "__class__ =",
        "_get_classes",
        "_trie",
        "_generation_batch",
        "_unprocessed_sequences",
        "mx.fast.scaled_dot_product_attention =",
    )
    compat = ROOT / "inference" / "engine" / "mlx_compat"
    outside = [
        f"{path.relative_to(ROOT)}: {mark}"
        for folder in ("inference", "monitoring", "lmx_site")
        for path in (ROOT / folder).rglob("*.py")
        if compat not in path.parents
        for mark in marks
        if mark in path.read_text()
    ]
    assert outside == []
    assert all(Path(compat / name).exists() for name in ("generator.py", "batch_layers.py", "attention.py"))


def test_the_cli_speaks_http_only():
    """`lmx` runs from any machine that reaches the server: no Django, no MLX, no LMX internals."""
    for prefix in ("django", "mlx", "mlx_lm", "inference", "monitoring", "lmx_site", "benchmarks"):
        assert _offenders(["lmx_cli"], prefix) == []
    assert _offenders(["inference", "monitoring", "lmx_site"], "lmx_cli") == []
