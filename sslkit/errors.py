"""User-facing errors.

Every error a user can cause by what they typed or pointed at (an unknown name, a bad config
value, a missing folder, a broken plugin) is an :class:`SSLKitError`. Its message is one line that
names the problem and the fix; the CLI prints it without a traceback and exits with code 2.
"""

from __future__ import annotations


class SSLKitError(Exception):
    """Base class of the errors that are the user's to fix (CLI exit code 2)."""


class ConfigError(SSLKitError):
    """A configuration key or value is invalid."""


class UnknownNameError(SSLKitError, KeyError):
    """A task, backbone, probe or dataset name is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateNameError(SSLKitError):
    """Two plugins registered the same name."""


class PluginError(SSLKitError):
    """A plugin could not be loaded or broke its contract."""


class DataError(SSLKitError):
    """A dataset is missing, empty or unreadable."""


class CheckpointError(SSLKitError):
    """A checkpoint or run folder is missing, corrupt or does not match the request."""


class ExportError(SSLKitError):
    """An encoder could not be exported, or its export failed verification."""


class DeployError(SSLKitError):
    """An exported encoder file is missing, corrupt or cannot run (``sslkit.deploy``)."""
