"""Error types that carry a message a user can act on."""

from __future__ import annotations


class MixtureRayError(Exception):
    """Base class: every error the package raises on purpose."""


class ConfigError(MixtureRayError):
    """A config key is unknown or its value is invalid; the message names the key."""


class MissingExtraError(MixtureRayError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(
            f"{what} is not available: install the optional extra with `pip install 'mixture-ray[{extra}]'`"
        )
        self.extra = extra


class SlideError(MixtureRayError):
    """A single slide cannot be used; the message names the slide and what to do."""

    def __init__(self, slide: str, reason: str) -> None:
        super().__init__(f"{slide}: {reason}")
        self.slide = slide
        self.reason = reason


class ManifestError(MixtureRayError):
    """A manifest file is invalid; the message names the file, rows and columns."""


class StageIncompleteError(MixtureRayError):
    """A stage finished with failures, or its input is not marked complete."""


class FolderBusyError(MixtureRayError):
    """Another run holds the stage folder's lease; the message names the holder and what to do."""


class NoSpaceError(MixtureRayError, OSError):
    """A write found no space left on its device (``errno.ENOSPC``); the message names the file.

    Still an ``OSError`` with ``errno == ENOSPC``, so code that checks the errno keeps working.
    """
