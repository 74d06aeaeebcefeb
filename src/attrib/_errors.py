"""Errors and warnings attrib raises.

Every error attrib raises for bad input is an :class:`AttribError`. The
concrete classes also derive from the matching built-in (``ValueError``,
``TypeError``, ``KeyError``-like lookups are ``ValueError``) so that code
written against plain Python exceptions keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AttribError",
    "AttribValueError",
    "AttribTypeError",
    "BackendError",
    "AttribWarning",
    "argument_error",
    "check_choice",
    "close_matches",
    "did_you_mean",
]


class AttribError(Exception):
    """Base class of every error attrib raises for bad input or setup."""


class AttribValueError(AttribError, ValueError):
    """An argument has the right type but a wrong value."""


class AttribTypeError(AttribError, TypeError):
    """An argument has the wrong type."""


class BackendError(AttribValueError):
    """No backend, an unknown one, an ambiguous choice, or one that is not installed."""


class AttribWarning(UserWarning):
    """Something attrib did may not be what the user meant (e.g. a guided rule changed nothing)."""


def close_matches(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """Up to ``n`` entries of ``choices`` that look like ``name`` (for "did you mean")."""
    choices = list(choices)
    import difflib  # on first use (an error path): not part of `import attrib`

    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not found:
        found = [c for c in choices if name and (name in c or c in name)][:n]
    return found


def did_you_mean(name: str, choices: Iterable[str], *, every: bool = False) -> str | None:
    """"Did you mean 'x'?" for the closest of ``choices`` (``every``: all close ones), else None.

    >>> did_you_mean("conv1x", ["conv1", "conv2", "fc"], every=True)
    "Did you mean 'conv1' or 'conv2'?"
    >>> did_you_mean("zzz", ["conv1", "fc"]) is None
    True
    """
    near = close_matches(name, choices)
    if not near:
        return None
    return f"Did you mean {' or '.join(repr(n) for n in (near if every else near[:1]))}?"


def argument_error(
    argument: str,
    expected: str,
    given: object,
    suggestion: str | None = None,
    *,
    kind: type[AttribError] = AttribValueError,
) -> AttribError:
    """Build an error that says which argument, what was expected and what was given.

    >>> str(argument_error("target", "an int", "cat"))
    "target: expected an int, got 'cat'"
    """
    given_text = given if isinstance(given, _Shown) else repr(given)
    if isinstance(given_text, str) and len(given_text) > 200:
        given_text = given_text[:197] + "..."
    message = f"{argument}: expected {expected}, got {given_text}"
    if suggestion:
        message += f". {suggestion}"
    return kind(message)


def check_choice(argument: str, value: object, choices: Iterable[str], *,
                 suggestion: str | None = None) -> str:
    """Return ``value`` if it is one of ``choices``, else raise an :class:`AttribValueError`.

    The error names ``argument``, lists the choices (in the order given) and
    shows ``value``. When ``value`` is a string close to a choice it asks
    "Did you mean ...?"; ``suggestion`` follows either way.

    >>> check_choice("kind", "mean", ["mean", "max"])
    'mean'
    >>> check_choice("kind", "maen", ["mean", "max"])
    Traceback (most recent call last):
    ...
    attrib._errors.AttribValueError: kind: expected one of ['mean', 'max'], got 'maen'. Did you mean 'mean'?
    """
    options = list(choices)
    if isinstance(value, str) and value in options:
        return value
    guess = did_you_mean(value, options) if isinstance(value, str) else None
    hint = " ".join(text for text in (guess, suggestion) if text)
    raise argument_error(argument, f"one of {options}", value, hint or None)


class _Shown(str):
    """A ``given`` value that is already a description and must not be ``repr``-ed."""


def shown(text: str) -> str:
    """Mark ``text`` as an already-formatted description of a given value."""
    return _Shown(text)
