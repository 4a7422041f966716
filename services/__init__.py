"""Deployable processes: each folder wires library parts into one service."""
