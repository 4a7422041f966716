"""product: answers product tickets from the knowledge base, in a critic loop."""

from jetmesh.cli import run_forever
from services.support.settings import SupportSettings
from services.support.teams import team_agent

agent = team_agent("product", SupportSettings())

if __name__ == "__main__":
    run_forever([agent])
