"""Versioned prompt templates for the LLM judge: render (with escaping) and parse.

A template is a text file with ``### system`` and ``### user`` sections and the placeholders
``{keyphrase}``, ``{category}``, ``{title}``. Templates ship as package data
(``kpspark/labeling/templates/judge_<version>.txt``); a config can point at another file.

Seller-written text cannot break the template: fields are stripped of control characters,
whitespace-collapsed, capped in length, and the characters that delimit fields (``<``, ``>``,
``{``, ``}``) and the section marker ``###`` are neutralised before they are put inside their tags.

Examples
--------
>>> t = load_template("v1")
>>> msgs = render(t, keyphrase="red iphone", category="Phones", title="Apple iPhone <b>Red</b>")
>>> "<title>Apple iPhone ‹b›Red‹/b›</title>" in msgs[1]["content"]
True
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SECTION = re.compile(r"^### (system|user)\s*$", re.MULTILINE)
MAX_CHARS = {"keyphrase": 120, "category": 120, "title": 300}


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed template: its version and the system/user texts with placeholders."""

    version: str
    system: str
    user: str


def parse_template(text: str, version: str) -> PromptTemplate:
    """A template from its text (``### system`` / ``### user`` sections); ValueError when it is not one."""
    parts = _SECTION.split(text)
    sections = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    if "user" not in sections:
        raise ValueError(f"prompt template {version!r} has no '### user' section")
    for field in ("{keyphrase}", "{title}"):
        if field not in sections["user"]:
            raise ValueError(f"prompt template {version!r} lacks the placeholder {field}")
    return PromptTemplate(version, sections.get("system", ""), sections["user"])


@lru_cache(maxsize=16)
def load_template(version: str = "v1", path: str | None = None) -> PromptTemplate:
    """Load ``templates/judge_<version>.txt`` (or ``path``; then ``version`` names it)."""
    if path:
        file = Path(path)
        if not file.exists():
            raise ValueError(f"prompt template {path!r} does not exist")
        return parse_template(file.read_text(encoding="utf-8"), version)
    # importlib.resources: also works when the package is imported from a zip (spark-submit --py-files)
    from importlib.resources import files

    templates = files("kpspark.labeling").joinpath("templates")
    res = templates.joinpath(f"judge_{version}.txt")
    if not res.is_file():
        known = sorted(p.name[len("judge_"):-len(".txt")] for p in templates.iterdir()
                       if p.name.startswith("judge_") and p.name.endswith(".txt"))
        raise ValueError(f"prompt version must be one of {known} (or give a template path), got {version!r}")
    return parse_template(res.read_text(encoding="utf-8"), version)


def escape_field(value: object, max_chars: int) -> str:
    """Make seller text safe to place inside a tag: no control chars, no delimiters, capped."""
    text = "" if value is None else str(value)
    text = _CONTROL.sub(" ", text)
    text = text.replace("<", "‹").replace(">", "›").replace("{", "(").replace("}", ")").replace("###", "#")
    text = " ".join(text.split())
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return text


def render(template: PromptTemplate, keyphrase: object, category: object, title: object,
           max_chars: dict[str, int] | None = None) -> list[dict[str, str]]:
    """Chat messages (``system`` when the template has one, then ``user``) for one pair."""
    caps = {**MAX_CHARS, **(max_chars or {})}
    fields = {"keyphrase": escape_field(keyphrase, caps["keyphrase"]),
              "category": escape_field(category, caps["category"]) or "unknown",
              "title": escape_field(title, caps["title"])}
    user = template.user
    for k, v in fields.items():  # not str.format: field values may contain braces-like text
        user = user.replace("{" + k + "}", v)
    msgs = [{"role": "system", "content": template.system}] if template.system else []
    return msgs + [{"role": "user", "content": user}]


YES_WORDS = ("yes",)
NO_WORDS = ("no",)


def classify_token(token: str) -> str | None:
    """``"yes"``/``"no"`` when a generated token is that answer (case/space/punctuation-insensitive)."""
    t = token.strip().strip(".!,:;\"'").lower()
    if t in YES_WORDS:
        return "yes"
    if t in NO_WORDS:
        return "no"
    return None
