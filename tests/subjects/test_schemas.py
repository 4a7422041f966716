"""The committed schemas and catalogue are what ``python -m subjects.generate`` writes today,
and every catalogued type round-trips a sample through msgspec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest

from jetmesh import Envelope, ErrorBody, Event
from jetmesh.identity.certificates import issue_certificate
from jetmesh.identity.keys import KeyPair
from jetmesh.identity.tokens import mint_token
from jetmesh.patterns import ApprovalRequest, Draft, DraftRequest, Review, ReviewRequest, Verdict
from jetmesh.toolgate import ToolApprovalAsk, ToolRecord, ToolRequest, ToolResult, args_digest
from services.research import wire as research
from services.support import wire as support
from subjects import generate
from subjects.catalogue import SCHEMA_TYPES, mesh_type, schema_file
from subjects.identity import CallerTokenClaims, CertificateClaims

KEY = KeyPair("gateway", bytes(range(32)))
ROOT = KeyPair("root", bytes(range(1, 33)))
NOW = 1_764_000_000.0


def token_claims() -> dict[str, Any]:
    token = mint_token(KEY, subject="alice", tenant="acme", scopes=["kb:read"], ttl_s=60, now=NOW)
    return jwt.decode(token, options={"verify_signature": False})


def certificate_claims() -> dict[str, Any]:
    token = issue_certificate(
        ROOT,
        KEY,
        publish=["mesh.agent.*.task"],
        subscribe=["mesh.agent.gateway.reply.*"],
        scopes=["kb:read"],
        ingress=True,
        ttl_s=60,
        now=NOW,
    )
    return jwt.decode(token, options={"verify_signature": False})


TICKET = support.Ticket(
    id="T-1",
    customer="alice",
    text="charged twice",
    refund=support.RefundAsk(order="A-1", amount_eur=240.0),
)
FINDING = research.Finding(
    index=1,
    subquestion="Background?",
    text="Kafka keeps logs.",
    sources=[research.Source(id="kafka", title="Apache Kafka")],
)

SAMPLES: dict[type[Any], Any] = {
    Envelope: Envelope(
        id="01KB0Y1XR1J8ZQ3V6W9T2M5P7D",
        kind="task",
        workflow="01KB0Y1XR1J8ZQ3V6W9T2M5P7D",
        sender="gateway",
        to="triage",
        created=NOW,
        type="support.Ticket/1",
        reply_to="mesh.agent.gateway.reply.i1",
        body=msgspec.Raw(b'{"id":"T-1","customer":"alice","text":"hi"}'),
    ),
    ErrorBody: ErrorBody("SchemaViolation", "bad body", "schema-violation"),
    Event: Event(kind="completed", agent="billing", at=NOW, task="01J", duration_ms=1.5),
    support.Ticket: TICKET,
    support.Case: support.Case(
        ticket=TICKET,
        route=support.RouteDecision(label="billing", target="billing", reason="keywords"),
        rounds=[support.CaseRound(round=1, draft="Hi", score=0.2, critique="missing: x")],
        reason="the critic approved none",
        team="billing",
    ),
    support.KbQuery: support.KbQuery(team="billing", text="refund", limit=3),
    support.KbHits: support.KbHits(
        articles=[support.Article(id="B-1", title="Refunds", body="...", score=0.5)]
    ),
    support.Resolution: support.Resolution(
        ticket_id="T-1",
        status="refunded",
        team="billing",
        text="Refunded.",
        sources=["B-1"],
        rounds=2,
        score=0.8,
        refund=support.RefundReceipt(id="R-1", order="A-1", amount_eur=240.0, approved_by="bob"),
        handoff=support.Handoff(id="H-1", queue="people"),
    ),
    research.Question: research.Question(text="How do queues compare?", max_subquestions=3),
    research.SubQuestion: research.SubQuestion(question="q", index=1, text="Background?"),
    research.Finding: FINDING,
    research.WriteRequest: research.WriteRequest(
        question="q", findings=[FINDING], gaps=["Risks?"], round=2, previous="v1", critique="c"
    ),
    research.ReportDraft: research.ReportDraft(text="# Report"),
    research.CritiqueRequest: research.CritiqueRequest(
        question="q", findings=[FINDING], draft="# Report", round=1, threshold=0.6
    ),
    research.Report: research.Report(
        question="q",
        text="# Report",
        sources=[research.Source(id="kafka", title="Apache Kafka")],
        subquestions=["Background?"],
        gaps=["Risks? (not researched: timeout)"],
        partial=True,
        rounds=2,
        score=0.8,
        stopped="threshold",
    ),
    DraftRequest: DraftRequest(brief="refunds", round=2, previous="v1", critique="cite"),
    Draft: Draft("v2"),
    ReviewRequest: ReviewRequest(brief="refunds", draft="v2", round=2, threshold=0.8),
    Review: Review(0.9, ""),
    ApprovalRequest: ApprovalRequest(
        workflow="01KB0Y1XR1J8ZQ3V6W9T2M5P7D",
        step="refund/approval.1",
        agent="refund",
        action="refund 120 EUR to alice",
        caller="alice",
        waited_s=3600.0,
    ),
    Verdict: Verdict(approved=False, note="needs a ticket"),
    ToolRequest: ToolRequest(tool="pay", args={"amount": 40, "to": "alice"}, approval="<jwt>"),
    ToolResult: ToolResult(
        tool="pay",
        value=msgspec.Raw(b'{"paid":40}'),
        args_sha256=args_digest({"amount": 40, "to": "alice"}),
        approval="01KB0Y1XR1J8ZQ3V6W9T2M5P7F",
        approved_by="bob",
        duration_ms=12.5,
    ),
    ToolApprovalAsk: ToolApprovalAsk(
        tool="pay",
        args={"amount": 40, "to": "alice"},
        args_sha256=args_digest({"amount": 40, "to": "alice"}),
        agent="payer",
    ),
    ToolRecord: ToolRecord(
        tool="pay",
        sender="payer",
        caller="alice",
        tenant="acme",
        args_sha256=args_digest({"amount": 40, "to": "alice"}),
        outcome="ok",
        approval="01KB0Y1XR1J8ZQ3V6W9T2M5P7F",
        approved_by="bob",
        credential="sha256:8638a4c4",
        duration_ms=12.5,
    ),
    CallerTokenClaims: msgspec.convert(token_claims(), CallerTokenClaims),
    CertificateClaims: msgspec.convert(certificate_claims(), CertificateClaims),
}

TYPES = [pytest.param(tp, id=mesh_type(tp)) for tp, _ in SCHEMA_TYPES]


def test_committed_files_are_up_to_date() -> None:
    problems = generate.problems()
    assert not problems, (
        "subjects/ generated files are out of date:\n  "
        + "\n  ".join(problems)
        + f"\n{generate.HINT}"
    )


def test_render_is_deterministic() -> None:
    assert generate.render() == generate.render()


def test_check_reports_stale_missing_and_extra_without_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert generate.main(["--dir", str(tmp_path)]) == 0
    assert generate.main(["--check", "--dir", str(tmp_path)]) == 0
    schemas = tmp_path / "schemas"
    (schemas / "support.Ticket.v1.json").write_text("{}\n")
    (schemas / "support.Resolution.v1.json").unlink()
    (schemas / "support.Old.v1.json").write_text("{}\n")
    capsys.readouterr()
    assert generate.main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "stale:   schemas/support.Ticket.v1.json" in err
    assert "missing: schemas/support.Resolution.v1.json" in err
    assert "extra:   schemas/support.Old.v1.json" in err
    assert "make schemas" in err
    assert (schemas / "support.Ticket.v1.json").read_text() == "{}\n"
    assert not (schemas / "support.Resolution.v1.json").exists()


def test_write_repairs_everything(tmp_path: Path) -> None:
    generate.write(tmp_path)
    (tmp_path / "schemas" / "support.Old.v1.json").write_text("{}\n")
    (tmp_path / "catalogue.json").write_text("[]\n")
    changes = generate.write(tmp_path)
    assert sorted(changes) == ["extra:   schemas/support.Old.v1.json", "stale:   catalogue.json"]
    assert generate.problems(tmp_path) == []


def test_files_are_sorted_json_with_a_trailing_newline() -> None:
    for path, content in generate.render().items():
        assert content.endswith("}\n"), path
        assert content == json.dumps(json.loads(content), sort_keys=True, indent=2) + "\n"


@pytest.mark.parametrize("tp", TYPES)
def test_schema_file_per_type(tp: type[Any]) -> None:
    name = mesh_type(tp)
    schema = json.loads(generate.render()[f"schemas/{schema_file(name)}"])
    assert schema["title"] == name
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$ref"] == f"#/$defs/{tp.__name__}"


def test_every_catalogued_type_has_a_sample() -> None:
    assert set(SAMPLES) == {tp for tp, _ in SCHEMA_TYPES}


@pytest.mark.parametrize("tp", TYPES)
def test_sample_round_trips(tp: type[Any]) -> None:
    sample = SAMPLES[tp]
    data = msgspec.json.encode(sample)
    back = msgspec.json.decode(data, type=tp)
    assert back == sample
    assert msgspec.json.encode(back) == data


@pytest.mark.parametrize("tp", TYPES)
def test_sample_fits_its_schema(tp: type[Any]) -> None:
    """A structural check (no validator dependency): required fields present, no others."""
    schema = json.loads(generate.render()[f"schemas/{schema_file(mesh_type(tp))}"])
    definition = schema["$defs"][tp.__name__]
    encoded = json.loads(msgspec.json.encode(SAMPLES[tp]))
    assert set(definition.get("required", [])) <= set(encoded)
    assert set(encoded) <= set(definition["properties"])


@pytest.mark.parametrize(
    ("claims", "tp"),
    [(token_claims, CallerTokenClaims), (certificate_claims, CertificateClaims)],
)
def test_jwt_claims_are_mirrored_exactly(claims: Any, tp: type[msgspec.Struct]) -> None:
    real = claims()
    assert set(real) == set(tp.__struct_fields__)
    assert msgspec.to_builtins(msgspec.convert(real, tp)) == real
