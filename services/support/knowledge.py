"""The knowledge base shipped with the mesh: ``kb/<team>.md``, one ``## <id> <title>``
section per article.

Example:
    >>> [a.id for a in articles("product")][:2]
    ['P-1', 'P-2']
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from services.support.wire import Article

_HEADING = re.compile(r"^##\s+(\S+)\s+(.+?)\s*$")


def parse(text: str) -> list[Article]:
    """The articles of one knowledge-base file."""
    found: list[Article] = []
    ident = title = ""
    body: list[str] = []

    def close() -> None:
        if ident and body:
            found.append(Article(id=ident, title=title, body=" ".join(body)))

    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            close()
            ident, title, body = heading.group(1), heading.group(2), []
        elif line.strip() and not line.startswith("#"):
            body.append(line.strip())
    close()
    return found


@cache
def articles(team: str) -> tuple[Article, ...]:
    """The articles of ``team`` (none for a team without a file)."""
    path = resources.files("services.support") / "kb" / f"{team}.md"
    if not path.is_file():
        return ()
    return tuple(parse(path.read_text(encoding="utf-8")))
