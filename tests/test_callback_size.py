"""Certification callbacks stay thin (issue 22): each supplies "certify one example", its schema
and its report, about 60-80 code lines; selection, sharding, streaming, resume, reporting and
the barrier live in the base class. Code lines are counted without blanks, comments and
docstrings."""

from __future__ import annotations

import ast
import io
import tokenize

import pytest

from conftest import ROOT

LIMIT = 80
CALLBACKS = sorted(
    [*(ROOT / "callbacks" / "certification").glob("*.py"), *(ROOT / "callbacks").glob("*attack.py")]
)
NOT_CALLBACKS = {"__init__.py", "base.py", "checks.py", "interrupt.py"}

# file (relative to the root) -> its code lines today, until it is thinned.
OVER = {}

SKIPPED = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)


def code_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not inside a docstring."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in SKIPPED and token.type != tokenize.ENDMARKER:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstrings)


def test_the_count_skips_docstrings_comments_and_blanks():
    source = '"""Doc."""\n\n\ndef f(x):\n    """Two\n    lines."""\n    # note\n'
    source += "    return (x +\n        1)\n"
    assert code_lines(source) == 3


@pytest.mark.parametrize("path", CALLBACKS, ids=lambda p: p.name)
def test_a_certification_callback_is_thin(path):
    if path.name in NOT_CALLBACKS:
        pytest.skip("not a certifier's callback")
    rel = path.relative_to(ROOT).as_posix()
    count = code_lines(path.read_text(encoding="utf-8"))
    assert count <= LIMIT, f"{rel} has {count} code lines, more than {LIMIT}"
