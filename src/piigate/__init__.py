"""piigate: step-up authentication around personally identifiable information."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("piigate")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
