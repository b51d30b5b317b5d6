"""A Griffe extension for ocdl's documentation site: the docstrings' reStructuredText as Markdown.

ocdl's docstrings follow numpydoc, whose prose is reStructuredText; mkdocstrings renders
them as Markdown. Before they are parsed, this extension rewrites the constructs they use:

* ``:math:`x``` becomes ``$x$`` and a ``.. math::`` block ``$$ ... $$`` (MathJax, through
  ``pymdownx.arithmatex``);
* ``:func:`name```, ``:class:``, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:`` become code
  (``~`` keeps the last component, as in Sphinx);
* ````literal```` becomes ```literal```, and a paragraph ending in ``::`` ends in ``:``
  (its indented block is code in both languages);
* a simple table (``===  ===`` borders) becomes a Markdown table;
* in a Parameters or Attributes section, an entry written ``name : what it is.`` (a
  sentence, or words starting with an article, where numpydoc puts the type) becomes ``name`` with that sentence as its
  description, and prose that follows the entries after a blank line gets a Notes
  heading (numpydoc's place for it), so that it is not read as entries.
"""

from __future__ import annotations

import re
import textwrap

import griffe

_MATH = re.compile(r":math:`([^`]+)`")
_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|exc):`(~?)([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")
_ENTRY = re.compile(r"^\*{0,2}\w+(\s*,\s*\*{0,2}\w+)*(\s+:(\s.*)?)?$")
_ENTRY_SECTIONS = ("Parameters", "Other Parameters", "Attributes")


def _role(match: re.Match) -> str:
    shorten, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if shorten else target}`"


def _math_blocks(lines: list[str]) -> list[str]:
    """``.. math::`` and its indented body as a ``$$`` display."""
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith(".. math::"):
            indent = line[: len(line) - len(line.lstrip())]
            first = line.strip()[len(".. math::") :].strip()
            body, i = ([first] if first else []), i + 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(indent + " ")):
                body.append(lines[i])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            math = textwrap.dedent("\n".join(body)).strip("\n")
            out += [f"{indent}$$", *(indent + row for row in math.splitlines()), f"{indent}$$", ""]
        else:
            out.append(line)
            i += 1
    return out


def _is_heading(lines: list[str], i: int) -> bool:
    """Whether ``lines[i]`` is a numpydoc section heading (underlined by dashes of its length)."""
    title = lines[i].strip()
    return bool(title) and i + 1 < len(lines) and lines[i + 1].strip() == "-" * len(title)


def _is_sentence(what: str) -> bool:
    """Whether the text after ``name :`` is a description rather than a type."""
    what = what.strip()
    return what.endswith(".") or ":math:" in what or what.split(" ", 1)[0] in ("the", "a", "an")


def _entries(lines: list[str]) -> list[str]:
    """Entries of Parameters and Attributes sections in numpydoc form (see the module docstring)."""
    out, section, indent = [], None, ""
    for i, line in enumerate(lines):
        if _is_heading(lines, i):
            section, indent = line.strip(), line[: len(line) - len(line.lstrip())]
        elif (section in _ENTRY_SECTIONS and line.strip() and i and not lines[i - 1].strip()
              and line[: len(line) - len(line.lstrip())] == indent and not _ENTRY.match(line.strip())
              and not line.strip().startswith("-")):
            out += [f"{indent}Notes", f"{indent}-----"]
            section = "Notes"
        elif section in _ENTRY_SECTIONS and line[: len(line) - len(line.lstrip())] == indent:
            names, colon, what = line.strip().partition(" : ")
            if colon and _is_sentence(what):
                out += [indent + names, indent + "    " + what.strip()]
                continue
        out.append(line)
    return out


def _cells(row: str, starts: list[int]) -> list[str]:
    """The cells of a table row whose columns start at ``starts``."""
    bounds = [*starts, len(row) + 1]
    return [row[bounds[k] : bounds[k + 1]].strip() for k in range(len(starts))]


def _tables(lines: list[str]) -> list[str]:
    """A simple reStructuredText table (border, rows, border) as a Markdown table with a header row."""
    out, i = [], 0
    while i < len(lines):
        if not _BORDER.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        border = lines[i]
        spans = [m.span() for m in re.finditer(r"=+", border)]
        end = next((j for j in range(i + 1, len(lines)) if _BORDER.match(lines[j])), None)
        if end is None:
            out.append(lines[i])
            i += 1
            continue
        later = next((j for j in range(end + 1, len(lines)) if _BORDER.match(lines[j])), None)
        header_rows = lines[i + 1 : end] if later is not None else []
        body_rows = lines[end + 1 : later] if later is not None else lines[i + 1 : end]

        starts = [start for start, _ in spans]
        header = _cells(header_rows[0], starts) if header_rows else [""] * len(spans)
        indent = border[: len(border) - len(border.lstrip())]
        out += [indent + "| " + " | ".join(header) + " |", indent + "|" + "---|" * len(spans)]
        out += [indent + "| " + " | ".join(_cells(row, starts)) + " |" for row in body_rows if row.strip()]
        i = (later if later is not None else end) + 1
    return out


def to_markdown(text: str) -> str:
    """The docstring ``text`` with its reStructuredText constructs rewritten as Markdown."""
    lines = _entries(_tables(_math_blocks(text.splitlines())))
    text = "\n".join(lines)
    text = _MATH.sub(lambda m: f"${m.group(1)}$", text)
    text = _ROLE.sub(_role, text)
    text = _LITERAL.sub(r"`\1`", text)
    return re.sub(r"(\S)::$", r"\1:", text, flags=re.MULTILINE)


class RstRoles(griffe.Extension):
    """Rewrite every docstring with :func:`to_markdown` before mkdocstrings parses it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
