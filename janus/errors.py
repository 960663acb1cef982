"""User-facing errors: raised with a message that names the file, offset or key."""

from __future__ import annotations


class JanusError(Exception):
    """An error the user can fix; the CLI prints its message without a traceback."""


class CaptureError(JanusError, ValueError):
    """A capture file cannot be read (not a capture, corrupt record, unsupported format)."""


class ConfigError(JanusError, ValueError):
    """A configuration value or command-line option is wrong."""
