"""The English/Chinese glossary: complete rows, lessons that exist, and the README in step with the package."""

from __future__ import annotations

from pathlib import Path

from metalearn_lite.lessons.glossary import GLOSSARY, markdown_table

REPO = Path(__file__).resolve().parent.parent


def test_every_term_has_both_languages_and_a_lesson_in_the_course():
    lessons = {p.name[:2] for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    for en, zh, lesson in GLOSSARY:
        assert en.strip() and zh.strip(), (en, zh)
        assert any("\u4e00" <= ch <= "\u9fff" for ch in zh), zh  # Chinese characters in the Chinese column
        assert lesson in lessons or lesson == "07", (en, lesson)
    english = [en for en, _, _ in GLOSSARY]
    assert len(set(english)) == len(english)
    for must in ("support set", "query set", "prototype", "inner loop", "few-shot learning"):
        assert any(must in en for en in english), must


def test_readme_carries_the_same_table():
    readme = (REPO / "README.md").read_text()
    assert markdown_table() in readme
