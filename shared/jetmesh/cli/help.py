"""Help text that flows: each paragraph of a command's docstring as one line, wrapped by the
terminal.

Typer's rich help keeps a docstring's single line breaks in the list of a group's commands
(and in every paragraph after the first), so a docstring wrapped at 100 columns shows
broken lines in a box of another width ("enforcing / the policy"). :func:`flow_help` joins
the lines of each paragraph of every command's and group's help, once the commands are
registered; paragraphs (blank lines) stay.

Example:
    >>> flowing('''Start the servers, enforcing
    ...     the policy.
    ...
    ...     Servers already answering are reused.''')
    'Start the servers, enforcing the policy.\\n\\nServers already answering are reused.'
"""

from __future__ import annotations

import inspect

import typer


def flowing(help_text: str) -> str:
    """``help_text`` dedented, with the lines of each paragraph joined by single spaces."""
    paragraphs = inspect.cleandoc(help_text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def flow_help(app: typer.Typer) -> typer.Typer:
    """Set the help of every command and group of ``app`` (and of ``app``) to its flowing
    text (:func:`flowing`), from the ``help`` given or the callback's docstring. Returns
    ``app``."""
    if isinstance(app.info.help, str):
        app.info.help = flowing(app.info.help)
    for command in app.registered_commands:
        doc = command.help or (inspect.getdoc(command.callback) if command.callback else None)
        if doc:
            command.help = flowing(doc)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            flow_help(group.typer_instance)
        if isinstance(group.help, str):
            group.help = flowing(group.help)
    return app
