"""The small knowledge base shipped with the demo, and a keyword scorer over it."""

from __future__ import annotations

import re

from subjects.helpdesk import Article

ARTICLES: dict[str, list[Article]] = {
    "billing": [
        Article(
            "b-1",
            "Refunds",
            "Refunds go back to the original payment method within 5 business days of approval.",
        ),
        Article(
            "b-2",
            "Double charge",
            "A duplicate charge is usually a pending "
            "authorisation; it disappears within 3 days. Otherwise we refund it.",
        ),
        Article("b-3", "Invoices", "Invoices are under Settings > Billing > Invoices, as PDF."),
    ],
    "technical": [
        Article(
            "t-1",
            "Login problems",
            "Reset your password from the sign-in page; if the "
            "reset mail does not arrive, check the spam folder.",
        ),
        Article(
            "t-2",
            "App crashes",
            "Update to the latest version, then clear the app "
            "cache. Send us the crash id if it persists.",
        ),
        Article(
            "t-3", "Sync errors", "Sync errors come from an expired session: sign out and in again."
        ),
    ],
}

WORD = re.compile(r"[a-z]+")


def words(text: str) -> set[str]:
    """Lower-case words of three letters or more, with a plural ``s`` dropped."""
    return {w.removesuffix("s") for w in WORD.findall(text.lower()) if len(w) > 2}


def search(team: str, text: str, limit: int) -> list[Article]:
    """Articles of ``team`` ranked by words shared with ``text`` (no match: none)."""
    query = words(text)
    scored = [(len(query & words(a.title + " " + a.body)), a) for a in ARTICLES.get(team, [])]
    ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: -s[0])
    return [a for _, a in ranked[:limit]]
