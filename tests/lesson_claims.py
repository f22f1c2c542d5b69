"""Find the numbers a lesson's prose states and check each against the lesson's own outputs.

A *claim* is a number written in a markdown cell that reports a measurement or a result:

* a percentage (``93.3 %``, ``93%``),
* a decimal (``0.88``),
* a time (``11 min``, ``343 s``, ``650 ms``, ``2 hours``),
* a ratio (``3.9×``, ``1.3x``).

Plain integers (``5-way``, ``lesson 04``, ``28×28`` as a size) are not claims.  A claim passes when

1. some number printed in the notebook's text outputs (stream, ``text/plain``, ``text/html``,
   ``text/markdown``) equals it at the precision the prose wrote it (``93.3`` matches a printed
   ``93.27``; a percentage also matches a printed fraction, ``0.9327``), or a code cell of the
   notebook writes it literally (a setting such as ``inner_lr=0.4``); or
2. its sentence names where it comes from: a paper (``Snell et al., 2017``, ``(Finn et al. 2017)``,
   ``Lake et al. (2015)``, any parenthesised year), the checkpoints README
   (``metalearn_lite/data/checkpoints/README.md`` or "the checkpoints README"), or a link ``[text](url)``; or
3. it is written as mathematics (inside ``$...$``), or as code (inside backticks): those are
   definitions and settings, not measurements; or
4. the cell lists it in a comment ``<!-- not-a-measurement: 0.5 2.0 -->``, for a number that is an
   example or a definition rather than a result (use sparingly; the comment is visible in review).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

_NUMBER = r"(?<![\w.])(\d+(?:\.\d+)?)"
_PATTERNS = [
    ("percentage", re.compile(_NUMBER + r"\s?%")),
    ("ratio", re.compile(_NUMBER + r"\s?[×x](?![\w\d])")),
    ("time", re.compile(_NUMBER + r"\s?(?:ms|s|sec|seconds?|min|minutes?|h|hours?)\b")),
    ("decimal", re.compile(r"(?<![\w.])(\d+\.\d+)(?![\w.]*\d)")),
]
_CITATION = re.compile(
    r"et al\.?|\((?:[^()]*?\b)?(?:19|20)\d\d[a-z]?\)|\b(?:19|20)\d\d\)|checkpoints/README|checkpoints README"
    r"|\]\([^)]+\)|\b[A-Z][a-z]+ (?:&|and) [A-Z][a-z]+\b.*\b(?:19|20)\d\d\b|\b[A-Z][a-z]+ & [A-Z][a-z]+",
    re.IGNORECASE,
)
_IGNORE_COMMENT = re.compile(r"<!--\s*not-a-measurement:([^>]*)-->")
_OUTPUT_NUMBER = re.compile(r"(?<![\w.])-?(\d+(?:\.\d+)?)(?:e([-+]?\d+))?")


@dataclass(frozen=True)
class Claim:
    """One number in a markdown cell that no output, code or citation backs."""

    notebook: str
    cell: int
    number: str
    kind: str
    sentence: str

    def __str__(self) -> str:
        return f"{self.notebook}, cell {self.cell}: {self.kind} {self.number!r} in: {self.sentence.strip()[:160]}"


def _strip_math_and_code(text: str) -> str:
    text = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.DOTALL)
    text = re.sub(r"\$[^$]*\$", " ", text)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.DOTALL)
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", text)  # images: their file names are not prose
    text = re.sub(r"<img[^>]*>", " ", text)
    return text


def _sentences(text: str) -> list[str]:
    """Split prose into sentences (a table row or a list item counts as one)."""
    parts: list[str] = []
    for block in re.split(r"\n\s*\n|\n(?=\s*[-*|]|\s*\d+\.\s)", text):
        parts.extend(re.split(r"(?<=[.!?])\s+(?=[A-Z(])", block))
    return parts


def _text_outputs(cell: dict) -> str:
    texts = []
    for out in cell.get("outputs", []) or []:
        if "text" in out:
            texts.append("".join(out["text"]))
        for key in ("text/plain", "text/html", "text/markdown", "text/latex"):
            data = out.get("data", {}).get(key)
            if data:
                texts.append("".join(data))
    return "\n".join(texts)


def _numbers(text: str) -> list[float]:
    found = []
    for m in _OUTPUT_NUMBER.finditer(text.replace(",", "")):
        value = float(m.group(1))
        if m.group(2):
            value *= 10 ** int(m.group(2))
        found.append(value)
    return found


def _decimals(number: str) -> int:
    return len(number.split(".")[1]) if "." in number else 0


def _matches(number: str, kind: str, printed: list[float]) -> bool:
    target = float(number)
    places = _decimals(number)
    half = 0.5 * 10 ** (-places) + 1e-9
    for value in printed:
        if abs(value - target) <= half:
            return True
        if kind == "percentage" and abs(100 * value - target) <= half and value <= 1.0:
            return True
        if kind == "time" and abs(value / 60 - target) <= half:  # printed seconds, prose minutes
            return True
    return False


def unbacked_claims(path: Path) -> list[Claim]:
    """Every claim in the notebook at ``path`` that nothing backs (see the module's docstring)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb.get("cells", [])
    printed = _numbers("\n".join(_text_outputs(c) for c in cells if c.get("cell_type") == "code"))
    code = "\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")
    code_numbers = set(re.findall(r"(?<![\w.])\d+(?:\.\d+)?", code))
    missing: list[Claim] = []
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "markdown":
            continue
        raw = "".join(cell.get("source", ""))
        ignored = set()
        for m in _IGNORE_COMMENT.finditer(raw):
            ignored.update(re.findall(r"\d+(?:\.\d+)?", m.group(1)))
        for sentence in _sentences(_strip_math_and_code(raw)):
            if _CITATION.search(sentence):
                continue
            seen: set[tuple[int, int]] = set()
            for kind, pattern in _PATTERNS:
                for m in pattern.finditer(sentence):
                    span = m.span(1)
                    if any(a <= span[0] < b for a, b in seen):
                        continue
                    seen.add(span)
                    number = m.group(1)
                    if number in ignored or number in code_numbers:
                        continue
                    if _is_reference(sentence, m, kind):
                        continue
                    if kind in ("ratio", "time") and "." not in number and _looks_like_size(sentence, m):
                        continue
                    if _matches(number, kind, printed):
                        continue
                    missing.append(Claim(path.name, index, number, kind, sentence))
    return missing


def _looks_like_size(sentence: str, m: re.Match) -> bool:
    """``28×28`` and ``3x3`` are sizes, not ratios."""
    return bool(re.match(r"\s?[×x]\s?\d", sentence[m.end(1):]))


def _is_reference(sentence: str, m: re.Match, kind: str) -> bool:
    """``Section 2.3``, ``arXiv:1703.07737``, ``eq. 4.1``: numbers that name a place, not a result; ``95 %``
    before "confidence" names an interval's level."""
    before = sentence[: m.start(1)]
    place = r"(?:[Ss]ections?|§|arXiv:|[Ee]q\.|[Ee]quations?|[Ff]ig\.|[Ff]igures?|[Tt]ables?|[Aa]lgorithm)\s*$"
    if re.search(place, before):
        return True
    return kind == "percentage" and bool(re.match(r"\s?%\s+(?:confidence|CI\b|interval)", sentence[m.end(1):]))
