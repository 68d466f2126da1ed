"""The errors the generator's stages raise; each message names the thing and the fix."""

from __future__ import annotations


class InspectError(ValueError):
    """The class cannot be wrapped; the message names the thing and the fix."""


class RenderError(ValueError):
    """The file cannot be written as asked (two imports bind one name, a ruff failure)."""
