"""The agent runtime: agents and their handlers, the handler context, running replicas."""
