"""Experiment configs: frozen dataclasses, ``name=value`` overrides and JSON round trips.

An experiment declares one frozen dataclass (fields may themselves be frozen dataclasses) and a
dict of presets (``quick``, ``cpu``, ``accel``). ``apply_overrides`` sets single fields by dotted
name, as the command line (``metarl_jax.io.cli``) passes them::

    apply_overrides(cfg, ["ppo.learning_rate=1e-3", "hidden=64,64"])

Values are parsed by the field's annotated type (``int``, ``float``, ``bool``, ``str``,
``tuple[...]`` written ``0.5,1.5``, ``X | None`` written ``none``, ``Literal[...]``), and the
result is built with ``dataclasses.replace``, so a dataclass's ``__post_init__`` checks still run.
``config_to_dict`` / ``config_from_dict`` round-trip a config through a run's ``config.json``.

Every mistake a user can make in a config raises a ``ConfigError`` (a ``UsageError``) with a
message meant to be read by a person.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import io
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

C = TypeVar("C")

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_NONE = ("none", "null")


class UsageError(Exception):
    """An error in what the user asked for (a bad flag, field, value or folder).

    The command line (``metarl_jax.io.cli.cli``) turns every ``UsageError`` into a one-line
    message on stderr and exit status 2.
    """


class ConfigError(UsageError, ValueError):
    """A config, preset or override that cannot be applied; the message says how to fix it."""


def check_at_least_one(config: Any, names: Sequence[str], prefix: str = "") -> None:
    """Raise ``ValueError("<prefix><name> must be >= 1, got <value>")`` for the first of the
    integer fields ``names`` of ``config`` that is below 1 (counts, sizes, chunk lengths)."""
    for name in names:
        value = getattr(config, name)
        if int(value) < 1:
            raise ValueError(f"{prefix}{name} must be >= 1, got {value}")


# ----------------------------------------------------------------------------------------------
# Field introspection


def _settable_fields(cls: type) -> dict[str, Any]:
    """``{name: resolved type}`` of the fields of a dataclass that ``replace`` can set."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a dataclass type")
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def field_names(cls: type, prefix: str = "") -> list[str]:
    """Every settable leaf field of a (nested) config class as a dotted name, in field order."""
    names = []
    for name, tp in _settable_fields(cls).items():
        if _is_dataclass_type(tp):
            names.extend(field_names(tp, f"{prefix}{name}."))
        else:
            names.append(prefix + name)
    return names


def field_help(cls: type, prefix: str = "") -> dict[str, str]:
    """One-line descriptions of the settable leaf fields of a (nested) config class, by dotted
    name, for ``--help``; fields without one are left out.

    A field's description is its ``metadata["help"]`` if it has one, else the ``# comment`` on
    its own line(s) of the class source (``ppo_steps: int = 10  # env steps per update``); the
    comments of a field written over several lines are joined. A class whose source cannot be
    read (defined interactively) gives no comments.
    """
    return _collect(cls, prefix, leading=False)


def field_notes(cls: type, prefix: str = "") -> dict[str, str]:
    """The comment-only lines just above a field in the class source (a note on the group of
    fields it starts, e.g. ``# Held-out grid (scales of the nominal)``), by dotted name of the
    field they precede (the first leaf field, for a nested config); joined into one line."""
    return _collect(cls, prefix, leading=True)


def _collect(cls: type, prefix: str, leading: bool) -> dict[str, str]:
    out = {}
    comments, types_ = _field_comments(cls), _settable_fields(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        trailing, above = comments.get(f.name, ("", ""))
        text = above if leading else (f.metadata.get("help") or trailing)
        tp = types_[f.name]
        if _is_dataclass_type(tp):
            inner = _collect(tp, f"{prefix}{f.name}.", leading)
            if leading and text:
                first = field_names(tp, f"{prefix}{f.name}.")[0]
                inner[first] = f"{text} {inner[first]}" if first in inner else text
            out.update(inner)
        elif text:
            out[prefix + f.name] = " ".join(str(text).split())
    return out


@functools.lru_cache(maxsize=None)
def _field_comments(cls: type) -> dict[str, tuple[str, str]]:
    """``{field: (trailing comment, comment lines above)}`` from the source of ``cls`` and of
    its dataclass bases (a subclass's wins)."""
    out: dict[str, tuple[str, str]] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object and dataclasses.is_dataclass(klass):
            out.update(_own_field_comments(klass))
    return out


def _own_field_comments(cls: type) -> dict[str, tuple[str, str]]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        tree = ast.parse(source)
        comments = {}  # line number -> comment text
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (OSError, TypeError, SyntaxError, tokenize.TokenError):
        return {}
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    if node is None:
        return {}
    lines = source.splitlines()
    out = {}
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            end = stmt.end_lineno or stmt.lineno
            # Comments inside the statement's lines only: a comment-only line after its last
            # line belongs to the next field.
            trailing = [comments[i] for i in range(stmt.lineno, end + 1) if comments.get(i)]
            above, i = [], stmt.lineno - 1
            while i >= 1 and lines[i - 1].strip().startswith("#"):
                above.insert(0, comments.get(i, ""))
                i -= 1
            if trailing or above:
                out[stmt.target.id] = (" ".join(trailing), " ".join(a for a in above if a))
    return out


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _optional_inner(tp: Any) -> Any | None:
    """``X`` when ``tp`` is ``X | None`` / ``Optional[X]``, else None."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


# ----------------------------------------------------------------------------------------------
# Parsing text (command line) into typed values


def _parse_scalar(text: str, tp: Any) -> Any:
    """Parse ``text`` as ``tp``; raises ValueError (without context) when it does not parse."""
    if tp is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError
    if tp is int:
        try:
            return int(text, 10)
        except ValueError:
            # Accept integral scientific notation (num_steps=1e6) but nothing lossy.
            x = float(text)
            if not x.is_integer() or abs(x) > 2**53:
                raise
            return int(x)
    if tp is float:
        return float(text)
    if tp is str:
        return text
    raise TypeError


def parse_value(text: str, tp: Any) -> Any:
    """Parse one command-line value ``text`` as the annotated type ``tp``.

    Raises:
        ValueError: ``text`` does not parse as ``tp``.
        TypeError: ``tp`` cannot be written on a command line (e.g. a dict).
    """
    inner = _optional_inner(tp)
    if inner is not None:
        return None if text.strip().lower() in _NONE else parse_value(text, inner)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        for choice in args:
            if str(choice) == text:
                return choice
        raise ValueError
    if origin is tuple or tp is tuple:
        parts = [p.strip() for p in text.split(",")] if text.strip() else []
        if not args:
            elem_types = [float] * len(parts)
        elif len(args) == 2 and args[1] is Ellipsis:
            elem_types = [args[0]] * len(parts)
        else:
            if len(parts) != len(args):
                raise ValueError
            elem_types = list(args)
        return tuple(_parse_scalar(p, t) for p, t in zip(parts, elem_types))
    return _parse_scalar(text, tp)


# ----------------------------------------------------------------------------------------------
# Overrides


def _unknown_field(name: str, cls: type) -> ConfigError:
    valid = field_names(cls)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(
        f"unknown config field '{name}'.{hint} Valid fields: {', '.join(valid)}."
    )


def _parse_override(cls: type, name: str, text: str) -> Any:
    """Resolve dotted ``name`` in ``cls`` and parse ``text`` as that field's type."""
    tp, owner = None, cls
    parts = name.split(".")
    for i, part in enumerate(parts):
        fields = _settable_fields(owner)
        if part not in fields:
            raise _unknown_field(name, cls)
        tp = fields[part]
        if i < len(parts) - 1:
            if not _is_dataclass_type(tp):
                raise _unknown_field(name, cls)
            owner = tp
    if _is_dataclass_type(tp):
        sub = ", ".join(field_names(tp, name + "."))
        raise ConfigError(f"'{name}' is a group of fields, not a value; set one of: {sub}.")
    try:
        return parse_value(text, tp)
    except TypeError:
        raise ConfigError(
            f"field '{name}' has type {_type_name(tp)}, which cannot be set from the command line."
        ) from None
    except ValueError:
        expected = _type_name(tp)
        if tp is bool:
            expected += " (true/false/1/0/yes/no)"
        elif typing.get_origin(tp) is tuple or tp is tuple:
            expected += " (comma-separated, e.g. 0.5,1.5)"
        raise ConfigError(
            f"cannot parse '{text}' for field '{name}': expected {expected}."
        ) from None


def _replace_nested(cfg: Any, values: Mapping[tuple[str, ...], Any]) -> Any:
    direct = {path[0]: v for path, v in values.items() if len(path) == 1}
    groups: dict[str, dict[tuple[str, ...], Any]] = {}
    for path, v in values.items():
        if len(path) > 1:
            groups.setdefault(path[0], {})[path[1:]] = v
    for head, sub in groups.items():
        direct[head] = _replace_nested(getattr(cfg, head), sub)
    try:
        return dataclasses.replace(cfg, **direct)
    except (ValueError, TypeError, AssertionError) as e:
        # A __post_init__ check of the config rejected the combination.
        raise ConfigError(f"invalid config {type(cfg).__name__}: {e}") from None


def apply_overrides(cfg: C, overrides: Sequence[str] | Mapping[str, str]) -> C:
    """Return ``cfg`` with ``name=value`` overrides applied (dotted names reach nested configs).

    Args:
        cfg: a frozen dataclass instance.
        overrides: ``["ppo.learning_rate=1e-3", ...]`` or ``{"ppo.learning_rate": "1e-3"}``;
            a later override of the same field wins.

    Raises:
        ConfigError: unknown field (with the closest match and the valid names), malformed
            override, or a value that does not parse as the field's type.
    """
    if isinstance(overrides, Mapping):
        pairs = list(overrides.items())
    else:
        pairs = []
        for item in overrides:
            name, sep, text = item.partition("=")
            if not sep or not name.strip():
                raise ConfigError(
                    f"override '{item}' is not of the form name=value "
                    f"(e.g. {field_names(type(cfg))[0]}=...)."
                )
            pairs.append((name, text))
    values = {}
    for name, text in pairs:
        name = name.strip()
        values[tuple(name.split("."))] = _parse_override(type(cfg), name, str(text))
    return _replace_nested(cfg, values) if values else cfg


# ----------------------------------------------------------------------------------------------
# JSON round trip


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A nested, JSON-able dict of a config dataclass (tuples become lists)."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    return {f.name: _to_plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()  # numpy / jax scalars
    return value


def config_from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
    """Rebuild a config of class ``cls`` from ``config_to_dict`` output (e.g. a run's config.json).

    Missing keys take the class defaults; unknown keys or values of the wrong type raise
    ConfigError, so a config saved by another version of the experiment is not misread.
    """
    return _from_dict(cls, d, prefix="")


def _from_dict(cls: type, d: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(d, Mapping):
        raise ConfigError(f"'{prefix.rstrip('.') or cls.__name__}' should be an object, got {d!r}.")
    fields = _settable_fields(cls)
    unknown = [k for k in d if k not in fields]
    if unknown:
        raise ConfigError(
            f"unknown field(s) {', '.join(prefix + k for k in unknown)} for {cls.__name__}; "
            f"valid fields: {', '.join(prefix + f for f in fields)}."
        )
    kwargs = {}
    for name, value in d.items():
        tp = fields[name]
        if _is_dataclass_type(tp):
            kwargs[name] = _from_dict(tp, value, prefix + name + ".")
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, AssertionError) as e:
        raise ConfigError(f"invalid config {cls.__name__}: {e}") from None


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check a JSON value against an annotated type; lists become tuples and ints floats."""
    def bad() -> ConfigError:
        return ConfigError(f"field '{where}' expects {_type_name(tp)}, got {value!r}.")

    inner = _optional_inner(tp)
    if inner is not None:
        return None if value is None else _coerce(value, inner, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Literal:
        if value not in args:
            raise bad()
        return value
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad()
        if not args:
            elem_types = [Any] * len(value)
        elif len(args) == 2 and args[1] is Ellipsis:
            elem_types = [args[0]] * len(value)
        else:
            if len(value) != len(args):
                raise bad()
            elem_types = list(args)
        return tuple(_coerce(v, t, f"{where}[{i}]")
                     for i, (v, t) in enumerate(zip(value, elem_types)))
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    return value  # other annotations (dict, callables, ...) are taken as stored


__all__ = [
    "ConfigError",
    "UsageError",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "field_help",
    "field_names",
    "field_notes",
    "parse_value",
]
