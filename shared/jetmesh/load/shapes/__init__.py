"""Two shapes of flow for load runs, made of small agents with no model: each answer is
computed from its request, so a run measures the mesh and the patterns, not a model.

- **fan-out**: ``fanout`` sends each request's ``parts`` (default 3) to the
  ``fanout_worker`` role in parallel (:func:`jetmesh.patterns.fan_out`) and answers with
  what they gathered, in order.
- **critic loop**: ``loop_editor`` has ``loop_writer`` draft and ``loop_critic`` score
  until the critic approves round ``approve_round`` (default 2)
  (:func:`jetmesh.patterns.refine`), and answers with the approved draft.

Each role is a module of this package with an ``agent``, so a scenario's ``[mesh]
processes`` names each with its own ``jetmesh run`` line (the role is the module's name):
``jetmesh run jetmesh.load.shapes.fanout:agent``. The shipped ``fan-out.toml`` and
``critic-loop.toml`` scenarios launch them; the wire types are in :mod:`.wire`.
"""
