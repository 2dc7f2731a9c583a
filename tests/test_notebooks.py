"""The analysis notebooks run top to bottom (nbclient, the venv's python3 kernel) on generated traces."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from analytics import synth

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["cost_attribution", "session_drilldown"]


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nb") / "traces"
    synth.write_dataset(folder, 3_000, seed=9, bodies=True, days=5)
    return folder


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_committed_without_outputs(name: str) -> None:
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    text = "".join("".join(c["source"]) for c in code)
    assert "CODEXGATE_TRACES" in text and "hive_partitioning = true" in text


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name: str, traces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEXGATE_TRACES", str(traces))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    # "python3" is ipykernel's native kernel: the interpreter running the tests (the venv's python)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= (3 if name == "cost_attribution" else 2)
    text = "\n".join(str(o.get("data", {}).get("text/html", "")) + o.get("text", "") for o in outputs)
    if name == "cost_attribution":
        assert "cache_hit_ratio" in text and "devstral-internal" in text
    else:
        assert "shell" in text and "cumulative_cost_usd" in text
