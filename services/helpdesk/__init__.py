"""The helpdesk demo mesh: four agents, each its own process.

    caller --Ticket--> triage (router) --Ticket--> billing | technical --KbQuery--> kb

Run one agent: ``jetmesh run services.helpdesk.triage:agent`` (or ``python -m
services.helpdesk.triage``); ``jetmesh demo`` starts them all.
"""
