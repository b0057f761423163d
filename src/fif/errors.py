"""User-facing errors: one line that names the culprit and what was expected."""


class FifError(Exception):
    """Raised for bad input; the CLI prints ``error: <message>`` and exits with status 2."""


class CorruptSampleError(FifError):
    """One sample (image or info entry) cannot be read; runs may skip these when told to."""

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        self.path = path  # the unreadable file, so skips can be counted per file
