"""The catalogue of jetmesh subjects and payload types.

Python types here are the source; ``python -m subjects.generate`` writes JSON Schema for
each into ``subjects/schemas/`` and the subject list into ``subjects/catalogue.json``, which
other languages read. A test fails when the committed files are stale.
"""
