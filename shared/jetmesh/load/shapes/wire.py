"""The bodies of the load shapes (:mod:`jetmesh.load.shapes`)::

caller --FanOutRequest--> fanout --Part x parts--> fanout_worker   (PartDone each)
       <--Gathered------

caller --LoopRequest--> loop_editor --mesh.DraftRequest/1--> loop_writer  (mesh.Draft/1)
       <--LoopAnswer--              --mesh.ReviewRequest/1--> loop_critic (mesh.Review/1)
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["FanOutRequest", "Gathered", "LoopAnswer", "LoopRequest", "Part", "PartDone"]

MAX_PARTS = 64
"""The most parts a fan-out request may ask for (the default ``max_fan_out``)."""

MAX_ROUNDS = 16
"""The latest round a critic-loop request may have approved."""


class FanOutRequest(msgspec.Struct, frozen=True, kw_only=True):
    """To ``fanout``: split ``text`` into ``parts`` calls of the worker."""

    __mesh_type__ = "load.FanOutRequest/1"

    text: str = ""
    parts: Annotated[int, msgspec.Meta(ge=1, le=MAX_PARTS)] = 3


class Part(msgspec.Struct, frozen=True, kw_only=True):
    """To ``fanout_worker``: one part of a fan-out."""

    __mesh_type__ = "load.Part/1"

    text: str
    index: int
    """From 1."""
    of: int
    """How many parts the fan-out has."""


class PartDone(msgspec.Struct, frozen=True, kw_only=True):
    """A worker's answer for one part."""

    __mesh_type__ = "load.PartDone/1"

    index: int
    text: str


class Gathered(msgspec.Struct, frozen=True, kw_only=True):
    """``fanout``'s answer: each part's text, in the order of the parts."""

    __mesh_type__ = "load.Gathered/1"

    parts: list[str]


class LoopRequest(msgspec.Struct, frozen=True, kw_only=True):
    """To ``loop_editor``: draft ``text`` until the critic approves round
    ``approve_round``."""

    __mesh_type__ = "load.LoopRequest/1"

    text: str = ""
    approve_round: Annotated[int, msgspec.Meta(ge=1, le=MAX_ROUNDS)] = 2


class LoopAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``loop_editor``'s answer: the last draft, how many rounds it took and why the loop
    stopped (``threshold``: the critic approved it; ``max-rounds``: it did not)."""

    __mesh_type__ = "load.LoopAnswer/1"

    text: str
    rounds: int
    stopped: str
    score: float
