"""The README's method table is generated from the registry: the two must match exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

import xai

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- methods-table:start -->", "<!-- methods-table:end -->"
REGENERATE = (
    "Regenerate it: python -c \"import xai; print(xai.methods.markdown_table(), end='')\" and "
    f"paste the output between {START} and {END} in README.md."
)


def test_markdown_table_lists_every_method():
    table = xai.methods.markdown_table()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] and len(rows) == len(xai.methods.available())
    assert {r.split("`")[1] for r in rows} == set(xai.methods.available())
    for name, method in xai.methods.available().items():
        row = next(r for r in rows if r.startswith(f"| `{name}`"))
        assert method.reference in row
        assert all(f"`{p}=" in row for p in method.defaults)


def test_readme_table_matches_registry():
    if not README.exists():
        pytest.skip("README.md does not exist yet; the lead adds it with the table markers")
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        pytest.fail(f"README.md has no {START} ... {END} markers. {REGENERATE}")
    inside = text.split(START, 1)[1].split(END, 1)[0]
    assert inside.strip("\n") == xai.methods.markdown_table().strip("\n"), (
        f"README.md's method table is out of date with the registry. {REGENERATE}"
    )
