"""Every number a lesson's prose states is in its outputs, in its code, or cites its source.

The convention is in ``tests/lesson_claims.py``'s docstring.  A failure names the notebook, the cell
(0-based, as ``nbformat`` counts) and the number; fix the prose, print the number from code, or name
its source in the sentence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lesson_claims import unbacked_claims

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_number_in_prose_is_backed(path: Path) -> None:
    claims = unbacked_claims(path)
    assert not claims, "numbers in the prose that no output, code or citation backs:\n" + "\n".join(map(str, claims))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_control_characters_in_the_prose(path: Path) -> None:
    r"""A backslash eaten by a Python string (``"\\rVert"`` written as ``"\rVert"``) leaves a control
    character that breaks the rendered formula; only newlines belong in a markdown cell."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    bad = [(i, repr(text[max(0, j - 20):j + 10]))
           for i, cell in enumerate(cells) if cell["cell_type"] == "markdown"
           for text in ["".join(cell["source"])]
           for j, ch in enumerate(text) if ord(ch) < 32 and ch != "\n"]
    assert not bad, f"{path.name}: control characters in markdown cells (cell, context): {bad}"


def _notebook(tmp_path: Path, markdown: str, printed: str, code: str = "print()") -> Path:
    nb = {
        "cells": [
            {"cell_type": "code", "source": code, "metadata": {}, "execution_count": 1,
             "outputs": [{"output_type": "stream", "name": "stdout", "text": printed}]},
            {"cell_type": "markdown", "source": markdown, "metadata": {}},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }
    path = tmp_path / "lesson.ipynb"
    path.write_text(json.dumps(nb))
    return path


@pytest.mark.parametrize(
    ("markdown", "printed", "found"),
    [
        ("The model reaches 93.3 % on new alphabets.", "accuracy 93.27 ± 0.53 %", []),
        ("The model reaches 94.1 % on new alphabets.", "accuracy 93.27 ± 0.53 %", ["94.1"]),
        ("It is 3.9× faster.", "ratio 3.92", []),
        ("It is 5× faster.", "ratio 3.92", ["5"]),
        ("Training took 11 min.", "trained in 660.4 s", []),
        ("Training took 15 minutes.", "trained in 660.4 s", ["15"]),
        ("The ratio went from 0.88 to 0.81.", "0.88 -> 0.80", ["0.81"]),
        ("Accuracy is 93.3 %.", "0.9327", []),
        ("Snell et al. (2017) report 98.8 %.", "", []),
        ("The paper reports 98.8 % [here](https://example.org).", "", []),
        ("The shipped model reaches 92.6 % (metalearn_lite/data/checkpoints/README.md).", "", []),
        ("With $\\alpha = 0.4$ and `inner_lr=0.01` ...", "", []),
        ("A 28×28 drawing, 5-way 1-shot, lesson 04.", "", []),
        ("We report the mean with its 95 % confidence interval.", "", []),
        ("See Section 2.3 of the paper.", "", []),
        ("Take p = 0.5 here. <!-- not-a-measurement: 0.5 -->", "", []),
    ],
)
def test_the_detector(tmp_path: Path, markdown: str, printed: str, found: list[str]) -> None:
    claims = unbacked_claims(_notebook(tmp_path, markdown, printed))
    assert [c.number for c in claims] == found


def test_a_number_set_in_code_is_backed(tmp_path: Path) -> None:
    path = _notebook(tmp_path, "We adapt with a step size of 0.4.", "", code="maml = MAML(net, inner_lr=0.4)")
    assert unbacked_claims(path) == []


def test_a_failure_names_notebook_cell_and_number(tmp_path: Path) -> None:
    (claim,) = unbacked_claims(_notebook(tmp_path, "It reached 97.5 %.", "0.9"))
    assert (claim.notebook, claim.cell, claim.number, claim.kind) == ("lesson.ipynb", 1, "97.5", "percentage")
    assert "lesson.ipynb, cell 1" in str(claim)
