"""Backward rules for rectifiers: vanilla, guided and deconvnet.

A rectifier is ``relu(x) = max(x, 0)`` or a clipped one such as
``relu6(x) = min(max(x, 0), 6)`` (``hardtanh`` with ``min_val=0``). Its true
derivative is the *local gradient* ``[lower < x < upper]``. A rule says how the
gradient arriving from above (``grad_output``) passes through it:

===========  ==========================================  ==========================
rule         ``grad_input``                              paper
===========  ==========================================  ==========================
vanilla      ``grad_output * local``                     (the true gradient)
guided       ``relu(grad_output) * local``               Springenberg et al. 2015
deconvnet    ``relu(grad_output)``                       Zeiler & Fergus 2014
===========  ==========================================  ==========================

Each rule's :meth:`GuidedActivation.backward` is the NumPy reference that
backends mirror natively and that tests (and third-party backends) check
against.

References
----------
Springenberg, Dosovitskiy, Brox, Riedmiller (2015). Striving for simplicity:
the all convolutional net. Zeiler & Fergus (2014). Visualizing and
understanding convolutional networks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

__all__ = ["GuidedActivation", "Vanilla", "Guided", "Deconvnet", "RULES"]


class GuidedActivation(ABC):
    """A backward rule for rectifiers, with its NumPy reference.

    Subclasses set :attr:`name` and implement :meth:`backward`.
    """

    name: ClassVar[str]

    @abstractmethod
    def backward(self, grad_output: np.ndarray, local_gradient: np.ndarray) -> np.ndarray:
        """Gradient passed to the rectifier's input.

        Parameters
        ----------
        grad_output : ndarray, any shape
            Gradient arriving at the rectifier's output.
        local_gradient : ndarray, same shape
            The rectifier's true derivative at its input, ``1`` where it passes
            its input through (``0 < x`` for relu, ``0 < x < 6`` for relu6)
            and ``0`` elsewhere.
        """

    def reference(
        self, x: np.ndarray, grad_output: np.ndarray, upper: float | None = None
    ) -> np.ndarray:
        """The rule applied to a rectifier ``min(max(x, 0), upper)`` at input ``x``.

        >>> GUIDED = RULES["guided"]
        >>> GUIDED.reference(np.array([-1.0, 2.0, 3.0]), np.array([5.0, 5.0, -5.0]))
        array([0., 5., 0.])
        """
        x = np.asarray(x)
        local = x > 0
        if upper is not None:
            local &= x < upper
        return self.backward(np.asarray(grad_output), local.astype(x.dtype))

    def __repr__(self) -> str:
        return f"<rule {self.name!r}>"


class Vanilla(GuidedActivation):
    """The true gradient: ``grad_input = grad_output * local``."""

    name = "vanilla"

    def backward(self, grad_output: np.ndarray, local_gradient: np.ndarray) -> np.ndarray:
        return grad_output * local_gradient


class Guided(GuidedActivation):
    """Guided backpropagation: ``grad_input = relu(grad_output) * local`` (Springenberg 2015)."""

    name = "guided"

    def backward(self, grad_output: np.ndarray, local_gradient: np.ndarray) -> np.ndarray:
        return np.maximum(grad_output, 0) * local_gradient


class Deconvnet(GuidedActivation):
    """Deconvnet: ``grad_input = relu(grad_output)``, ignoring the forward mask (Zeiler 2014)."""

    name = "deconvnet"

    def backward(self, grad_output: np.ndarray, local_gradient: np.ndarray) -> np.ndarray:
        return np.maximum(grad_output, 0) * np.ones_like(local_gradient)


RULES: dict[str, GuidedActivation] = {rule.name: rule for rule in (Vanilla(), Guided(), Deconvnet())}
