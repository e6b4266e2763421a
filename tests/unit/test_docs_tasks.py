"""docs/tasks.md's table names every model of the catalog with its task and variants."""

from __future__ import annotations

from pathlib import Path

from mlbox.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[2]


def test_the_task_table_lists_every_model_with_its_task_and_variants() -> None:
    catalog = load_catalog(ROOT / "images.yaml")
    rows = {
        cells[0].split()[0]: cells
        for line in (ROOT / "docs" / "tasks.md").read_text().splitlines()
        if line.startswith("| ") and not line.startswith(("| model", "| ---"))
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert set(rows) == set(catalog.models)
    for name, model in catalog.models.items():
        _, task, variants, backends, *_ = rows[name]
        assert task == model.task, name
        listed = {v.strip() for part in variants.split(";") for v in part.split(":")[-1].split(",")}
        assert listed == set(model.variants), name
        assert set(backends.split(", ")) == {v.backend for v in model.variants.values()}, name
