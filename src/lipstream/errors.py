"""The one exception hierarchy of lipstream; each service maps it to its own status codes."""


class LipstreamError(Exception):
    """Base of every error lipstream raises on purpose; the message names the problem."""


class InvalidInput(LipstreamError, ValueError):
    """Input had the wrong type, shape, range or format; the message says what is accepted."""


class CheckpointError(LipstreamError):
    """A weights file could not be read or does not fit the network it is meant for."""


class PackageError(LipstreamError):
    """A model package is missing a file or holds a malformed one."""


class ModelNotFound(LipstreamError, KeyError):
    """No model package goes by the requested name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Overloaded(LipstreamError):
    """The server has more work queued than it accepts; retry later or send less."""


class ServiceUnavailable(LipstreamError):
    """Another lipstream service could not be reached (it is down or restarting)."""
