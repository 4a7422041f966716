"""JSON Schema of a catalogued type, from msgspec, with the field docstrings of the source.

msgspec writes the schema; two things are added for readers in other languages:

- each field's docstring (the string under it in the class body) as its ``description``,
  or, where that docstring points at Python source, the text of
  :data:`WIRE_DESCRIPTIONS`;
- ``msgspec.Raw`` fields (the envelope's ``body``) become "any JSON value" (required when
  the field has no default): msgspec cannot describe a ``Raw`` default, and on the wire a
  body is simply the payload's JSON.

Example:
    >>> from services.support.wire import Ticket
    >>> schema_of(Ticket, "support.Ticket/1")["title"]
    'support.Ticket/1'
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Annotated, Any, Final

import msgspec
import msgspec.inspect as mi

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
RAW_DESCRIPTION: Final = "Any JSON value: the payload, of the type named in `type`."
WIRE_DESCRIPTIONS: Final[dict[tuple[str, str], str]] = {
    ("jetmesh.envelope.Envelope", "chain"): (
        "Tasks (required): the delegation chain from ingress to this task, first hop first, "
        "one link per hop: an EdDSA compact JWS with header typ mesh-delegation+jwt and claims "
        "iss, to, wf, step, scopes, exp and prev (base64url without padding of the SHA-256 of "
        "the previous link's text, or of the caller token's for the first link). See "
        '"The delegation chain" in subjects/README.md.'
    ),
}
"""Field descriptions, by (class, field), for readers in other languages: they replace a
docstring that refers the reader to Python source."""


def schema_of(tp: type[msgspec.Struct], name: str) -> dict[str, Any]:
    """The JSON Schema of ``tp``, titled with its mesh type ``name``."""
    schema = msgspec.json.schema(_without_raw(tp))
    structs = {cls.__name__: cls for cls in _structs_in(tp)}
    for definition in schema.get("$defs", {}).values():
        cls = structs.get(definition.get("title", ""))
        if cls is not None:
            _describe_fields(definition, cls)
    return {"$schema": JSON_SCHEMA_DIALECT, "title": name, **schema}


def _without_raw(tp: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """``tp``, or a look-alike Struct whose ``msgspec.Raw`` fields are "any JSON"."""
    fields = msgspec.structs.fields(tp)
    if not any(f.type is msgspec.Raw for f in fields):
        return tp
    spec: list[tuple[str, Any, Any]] = []
    docs = _field_docs(tp)
    for f in fields:
        if f.encode_name != f.name:
            raise TypeError(f"{tp.__name__}.{f.name}: renamed fields are not supported here")
        if f.type is msgspec.Raw:
            described = f"Any JSON value. {docs[f.name]}" if f.name in docs else RAW_DESCRIPTION
            required = f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT
            anything = Annotated[Any, msgspec.Meta(description=described)]
            spec.append((f.name, anything, msgspec.NODEFAULT if required else None))
        elif f.default is not msgspec.NODEFAULT:
            spec.append((f.name, f.type, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            spec.append((f.name, f.type, msgspec.field(default_factory=f.default_factory)))
        else:
            spec.append((f.name, f.type, msgspec.NODEFAULT))
    config = tp.__struct_config__
    return msgspec.defstruct(
        tp.__name__,
        [(n, t) if d is msgspec.NODEFAULT else (n, t, d) for n, t, d in spec],
        kw_only=True,
        frozen=config.frozen,
        tag_field=config.tag_field,
        tag=config.tag,
        forbid_unknown_fields=config.forbid_unknown_fields,
        array_like=config.array_like,
        module=tp.__module__,
        namespace={"__doc__": tp.__doc__},
    )


def _structs_in(tp: type[Any]) -> list[type[Any]]:
    """Every Struct class reachable from ``tp``'s fields, ``tp`` first."""
    found: dict[type[Any], None] = {}

    def walk(node: Any) -> None:
        if isinstance(node, mi.StructType):
            if node.cls in found:
                return
            found[node.cls] = None
            for field in node.fields:
                walk(field.type)
        elif isinstance(node, mi.Type):
            for value in msgspec.structs.astuple(node):
                for item in value if isinstance(value, tuple) else (value,):
                    walk(item)

    walk(mi.type_info(tp))
    return list(found)


def _describe_fields(definition: dict[str, Any], cls: type[Any]) -> None:
    # msgspec copies ``__doc__`` as is; Python 3.13 dedents docstrings, 3.11 does not.
    if cls.__doc__:
        definition["description"] = inspect.cleandoc(cls.__doc__)
    properties: dict[str, dict[str, Any]] = definition.get("properties", {})
    name = f"{cls.__module__}.{cls.__qualname__}"
    for field, doc in _field_docs(cls).items():
        prop = properties.get(field)
        if prop is not None and "description" not in prop:
            prop["description"] = WIRE_DESCRIPTIONS.get((name, field), doc)


def _field_docs(cls: type[Any]) -> dict[str, str]:
    """Docstrings written under fields in ``cls``'s source, by field name."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    node = ast.parse(source).body[0]
    if not isinstance(node, ast.ClassDef):
        return {}
    docs: dict[str, str] = {}
    for stmt, after in zip(node.body, node.body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs
