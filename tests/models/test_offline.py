"""The offline deterministic provider: honest about what it is, the same reply for the same
request, and steered by the documented prompt conventions."""

from __future__ import annotations

import asyncio
import random

import pytest

from jetmesh.models import ModelReply, OfflineProvider, build_request
from jetmesh.models.offline import MODEL, PROVIDER
from jetmesh.models.prompt import parse
from jetmesh.models.templates import LEXICON
from jetmesh.models.text import (
    content_stems,
    cosine,
    embed,
    estimate_tokens,
    similarity,
    words,
)

LABELS = "task: classify\nlabels: billing, technical, product"
KB = (
    "snippet KB-1: Refunds go back to the original payment method within 5 business days.\n"
    "snippet KB-2: Invoices are under Settings > Billing > Invoices, as PDF.\n"
    "snippet KB-3: Update to the latest version, then clear the app cache."
)


def ask(prompt: str, system: str = "", **options: object) -> ModelReply:
    request = build_request(prompt, system=system, **options)  # type: ignore[arg-type]
    return asyncio.run(OfflineProvider().complete(request))


def test_it_says_what_it_is() -> None:
    reply = ask("hello", LABELS)
    assert (reply.provider, reply.model) == (PROVIDER, MODEL)
    assert reply.model == "offline-deterministic/templates-v1"
    assert reply.text.splitlines()[-1].startswith("method: ")
    assert reply.text.endswith(f"({MODEL})")


def test_same_request_same_reply() -> None:
    first = ask("The app crashes on start", LABELS)
    assert all(ask("The app crashes on start", LABELS) == first for _ in range(3))


def test_a_prompt_without_a_task_gets_an_honest_refusal() -> None:
    reply = ask("Write me a poem about the sea")
    assert "is not a language model" in reply.text
    assert "task: classify | draft | score | plan | summarise | report | rank" in reply.text


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("I was charged twice for my subscription", "billing"),
        ("Where can I download my invoice?", "billing"),
        ("The app crashes when I open settings", "technical"),
        ("Login fails with error 500", "technical"),
        ("Could you add a dark mode? Feature request", "product"),
    ],
)
def test_classify_by_keyword_rules(text: str, label: str) -> None:
    reply = ask(text, LABELS)
    first, confidence, method = reply.text.splitlines()
    assert first == label
    assert confidence.startswith("confidence: ")
    assert method.startswith("method: keyword rules (")


def test_classify_names_the_matched_words() -> None:
    assert (
        "(charged, subscription, twice)"
        in ask("I was charged twice for my subscription", LABELS).text
    )


def test_classify_is_steered_by_the_prompts_own_keywords_and_default() -> None:
    system = (
        "task: classify\nlabels: kitchen, garden, other\nkeywords kitchen: oven, sink\n"
        "default: other"
    )
    assert ask("my oven is cold", system).text.startswith("kitchen\n")
    assert ask(
        "the roses need water", system + "\nlabel garden: roses, lawn, trees"
    ).text.startswith("garden\n")
    reply = ask("nothing matches here", system)
    assert reply.text.startswith("other\nconfidence: 0.00")
    assert "default label" in reply.text


def test_classify_is_inferred_from_labels() -> None:
    assert ask("I want a refund", "labels: billing, technical").text.startswith("billing\n")


def test_draft_uses_the_snippets_that_match_the_question() -> None:
    reply = ask(
        "How do I get a refund to my payment card?\n\n" + KB,
        "task: draft\ncustomer: alice\nteam: billing\nmax_snippets: 1",
    )
    assert reply.text.startswith("Hi alice,\n\nRefunds go back to the original payment method")
    assert "Invoices" not in reply.text
    assert "billing team" in reply.text
    assert "method: template draft from snippets KB-1" in reply.text


def test_draft_pulls_in_a_snippet_for_each_required_point() -> None:
    reply = ask(
        "How do I get a refund?\n\n" + KB + "\nrequire: where invoices are",
        "task: draft\ncustomer: bob\nmax_snippets: 1",
    )
    assert "Refunds go back" in reply.text
    assert "Invoices are under Settings" in reply.text
    assert "snippets KB-1, KB-2" in reply.text


def test_draft_without_snippets_hands_over() -> None:
    reply = ask("My thing is weird", "task: draft\ncustomer: carol\nteam: technical")
    assert "a technical specialist will follow up" in reply.text
    assert "hand-over" in reply.text


def test_score_against_a_rubric() -> None:
    system = (
        "task: score\nthreshold: 0.6\n"
        "criterion: mentions the refund within business days\n"
        "criterion: addresses alice\n"
        "criterion: apologises for the double charge"
    )
    draft = "draft: Hi alice, refunds go back to your card within 5 business days."
    lines = ask(draft, system).text.splitlines()
    assert lines[0] == "score: 0.61"
    assert lines[1] == "verdict: pass"
    assert lines[2] == "threshold: 0.60"
    assert lines[3].startswith("met: mentions the refund within business days")
    assert lines[4].startswith("met: addresses alice")
    assert lines[5].startswith("missing: apologises for the double charge")


def test_score_verdict_revise_below_threshold() -> None:
    reply = ask("draft: Hello.", "task: score\nrubric: cites the invoice; gives a refund date")
    assert "verdict: revise" in reply.text
    assert reply.text.count("missing: ") == 2


def test_plan_splits_a_question_into_sub_questions() -> None:
    reply = ask(
        "What are the trade-offs of NATS JetStream and Kafka for agent messaging?",
        "task: plan\nmax_items: 4",
    )
    items = reply.text.splitlines()[:-1]
    assert items == [
        "1. Background: what is known about NATS JetStream for agent messaging?",
        "2. Background: what is known about Kafka for agent messaging?",
        "3. Comparison: how do NATS JetStream and Kafka differ for agent messaging?",
        "4. Evidence: which sources or measurements bear on NATS JetStream and Kafka for agent "
        "messaging?",
    ]


def test_plan_of_a_single_subject() -> None:
    reply = ask("How does JetStream store messages?", "task: plan\nmax_items: 2")
    assert reply.text.splitlines()[:-1] == [
        "1. Background: what is known about JetStream store messages?",
        "2. Mechanism: how does JetStream store messages work in practice?",
    ]


def test_summarise_extracts_the_central_sentences_in_order() -> None:
    text = (
        "NATS is a messaging system. It was created in 2010. JetStream adds persistence to "
        "NATS. Kafka is a distributed log. Both NATS and Kafka persist messages to disk."
    )
    reply = ask(text, "task: summarise\nmax_sentences: 2")
    summary = reply.text.splitlines()[0]
    assert summary == "NATS is a messaging system. Both NATS and Kafka persist messages to disk."


def test_report_from_findings() -> None:
    reply = ask(
        "question: How do NATS and Kafka compare?\n"
        "finding: JetStream persists messages with file storage.\n"
        "finding: Kafka keeps a partitioned log.",
        "task: report\ntitle: NATS and Kafka",
    )
    text = reply.text
    assert text.startswith("# NATS and Kafka\n\n## Question\nHow do NATS and Kafka compare?")
    assert "## Summary\n" in text
    assert "## Findings\n1. JetStream persists messages with file storage.\n2. Kafka keeps" in text


def test_rank_documents_by_similarity() -> None:
    reply = ask(
        "refund to my card\ndoc A: Clear the app cache.\ndoc B: Refunds go back to your card.",
        "task: rank",
    )
    assert reply.text.splitlines()[0].startswith("B ")
    assert not any(line.startswith("A ") for line in reply.text.splitlines())


def test_a_reply_can_be_fed_into_the_next_prompt() -> None:
    plan = ask("Why is the sky blue?", "task: plan").text
    prompt = parse(build_request(plan, system="task: summarise"))
    assert "method" in prompt.single
    assert "method:" not in prompt.text


def test_multi_line_values_and_free_text() -> None:
    prompt = parse(
        build_request(
            "The customer asks about a refund.\n\nsnippet KB-1: first line\nsecond line\n\n"
            "draft: para one\n\npara two\ncriterion: x",
            system="Task: Score",
        )
    )
    assert prompt.task == "score"
    assert prompt.pairs("snippet") == [("KB-1", "first line\nsecond line")]
    assert prompt.values("draft") == ["para one\n\npara two"]
    assert prompt.values("criterion") == ["x"]
    assert prompt.free == "The customer asks about a refund."


def test_token_counts_are_the_word_estimate() -> None:
    reply = ask("one two three", "task: summarise")
    assert reply.input_tokens == estimate_tokens("task: summarise") + estimate_tokens(
        "one two three"
    )
    assert reply.output_tokens == estimate_tokens(reply.text)
    assert estimate_tokens("a b c") == 4


def test_max_tokens_cuts_the_output() -> None:
    reply = ask("What is jetmesh?", "task: plan", max_tokens=8)
    assert reply.stop_reason == "max_tokens"
    assert reply.output_tokens <= 8
    assert ask("What is jetmesh?", "task: plan").stop_reason == "end_turn"


def test_stop_sequences_cut_the_output() -> None:
    reply = ask("What is jetmesh?", "task: plan", stop=["2."])
    assert reply.stop_reason == "stop_sequence"
    assert reply.text.startswith("1. ")
    assert "2." not in reply.text


def test_embedding_is_stable_and_similarity_ranks() -> None:
    assert embed("refund my charge") == embed("refund my charge")
    assert len(embed("x")) == 256
    assert embed("the and of") == [0.0] * 256
    near = similarity("I was charged twice", "double charge refund")
    far = similarity("I was charged twice", "the app crashes on start")
    assert near > far >= -1.0


def test_kept_stems_and_embeddings_are_handed_out_as_copies() -> None:
    text = "Refunds are charged back within five days"
    stems, vector = content_stems(text), embed(text)
    assert stems == ["refund", "charg", "back", "within", "fiv", "day"]
    stems.append("changed")
    vector[0] = 9.0
    assert content_stems(text) == ["refund", "charg", "back", "within", "fiv", "day"]
    assert embed(text)[0] != 9.0
    # ``drop`` is applied to the words, kept or not
    assert content_stems(text, drop=["refunds"]) == ["charg", "back", "within", "fiv", "day"]


def test_similarity_is_the_cosine_of_the_embeddings_to_the_last_bit() -> None:
    """similarity() skips the buckets where either text has nothing; the float must still
    be the dense cosine's, or a ranking of equal scores could come out another way."""
    rng = random.Random(7)
    vocabulary = words(" ".join(LEXICON.values()))  # the classifier's own words
    texts = [" ".join(rng.choices(vocabulary, k=rng.randint(0, 12))) for _ in range(120)]
    pairs = list(zip(texts, reversed(texts), strict=True)) + [(t, t) for t in texts[:10]]
    for a, b in pairs:
        dense = sum(x * y for x, y in zip(embed(a), embed(b), strict=True))
        assert similarity(a, b).hex() == float(dense).hex() == cosine(embed(a), embed(b)).hex()
    assert any(similarity(a, b) < 0 for a, b in pairs)  # signed buckets: some pairs below 0
    with pytest.raises(ValueError, match="dimensions"):
        cosine([1.0], [1.0, 0.0])
