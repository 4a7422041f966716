"""loop_editor: the entry of the critic-loop shape. It has ``loop_writer`` draft and
``loop_critic`` score (:func:`~jetmesh.patterns.refine`, the roles called with the
pattern's own types) until the critic approves round ``approve_round``, and answers with
that draft.

Serve it with ``jetmesh run jetmesh.load.shapes.loop_editor:agent`` beside the writer and
the critic; the shipped ``critic-loop`` scenario sends to it.
"""

from __future__ import annotations

from ...patterns import refine
from ...runtime import Agent
from ...runtime.context import Context
from .loop_critic import ROLE as CRITIC
from .loop_critic import round_score
from .loop_writer import ROLE as WRITER
from .wire import LoopAnswer, LoopRequest

__all__ = ["agent"]

agent = Agent("loop_editor", description="drafts with the writer until the critic approves")


@agent.handler
async def edit(req: LoopRequest, ctx: Context) -> LoopAnswer:
    """The approved draft (or, if none was, the last), its rounds and why the loop
    stopped."""
    done = await refine(
        ctx,
        producer=WRITER,
        critic=CRITIC,
        brief=req.text,
        threshold=round_score(req.approve_round),
        max_rounds=req.approve_round,
    )
    return LoopAnswer(
        text=done.draft.text, rounds=len(done.rounds), stopped=done.stopped, score=done.score
    )
