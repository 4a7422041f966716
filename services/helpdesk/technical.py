"""technical: answers technical tickets."""

from jetmesh import run_forever
from services.helpdesk.teams import team_agent

agent = team_agent("technical")

if __name__ == "__main__":
    run_forever([agent])
