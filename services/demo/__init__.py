"""The demo: the support and the research meshes together on servers that enforce their
policy, with a person approving and denying refunds, and each workflow's event tree.

Run it: ``python -m services.demo`` (``make demo``). See README.md.
"""

from pathlib import Path

MESHES = ("services.support", "services.research")
"""The meshes the demo runs, each a package of services/."""

POLICY = Path(__file__).with_name("policy.toml")
"""The demo's policy: the two meshes' files, over the library's roles."""
