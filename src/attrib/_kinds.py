"""Type tests that import nothing: for modules the tested type's module reaches back to.

:class:`attrib.Explanation` draws itself through :mod:`attrib.plotting`, which
takes Explanations (and :mod:`attrib.postprocess`, which plotting uses); an
object can be an Explanation only once :mod:`attrib._explanation` is loaded,
so the test looks the class up in ``sys.modules`` instead of importing it (as
einops and array-api-compat detect frameworks), and the import graph keeps
one direction: ``_explanation -> plotting -> postprocess``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import TypeGuard

    from ._explanation import Explanation

__all__ = ["is_explanation"]


def is_explanation(value: object) -> TypeGuard[Explanation]:
    """Whether ``value`` is an :class:`attrib.Explanation` (never imports its module)."""
    module = sys.modules.get("attrib._explanation")
    return module is not None and isinstance(value, module.Explanation)
