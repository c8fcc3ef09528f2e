"""The HTTP API's request and response bodies; they live in ``core.schemas`` so that the Python client shares
them without importing the server."""

from core.schemas import *  # noqa: F403
from core.schemas import __all__ as __all__
