"""The version of attrib (one place: ``attrib.__version__`` and the dataset store read it)."""

__version__ = "0.1.0"
