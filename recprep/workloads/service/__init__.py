"""Moved to :mod:`recprep.delivery.service`. This forwarding import warns, and goes in the release
``recprep._moved.REMOVED_IN`` names."""

from ..._moved import forward

forward(__name__)
