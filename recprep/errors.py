"""Error types that reach users. Each carries a message that names the field, file or line."""


class RecprepError(Exception):
    """Base class: an error with a message meant for the user (no traceback needed)."""


class SpecError(RecprepError):
    """The PreprocessJob is invalid; the message names the field path and the allowed values."""


class SourceError(RecprepError):
    """The source cannot be read (missing file, unreadable header, unknown format)."""


class OutputError(RecprepError):
    """The output cannot be written, or holds a different job's shards."""


class BadDataError(RecprepError):
    """Too many malformed rows (more than spec.source.maxBadFraction)."""
