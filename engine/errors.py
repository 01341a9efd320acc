"""The small error family the CLI and TUI turn into one clear line (never a traceback)."""


class OpticalError(Exception):
    """Base for every error a user can cause and fix."""


class ConfigError(OpticalError):
    """A config key, value, file or ratio is invalid."""


class ExperimentNotFound(OpticalError):
    """No experiment has the requested id."""


class StoreError(OpticalError):
    """The database cannot be opened or used (not SQLite, a directory, newer schema...)."""


class InvalidTransition(OpticalError):
    """The requested state change is not allowed (e.g. retrying a running experiment)."""


class DataMissing(OpticalError):
    """A benchmark or training file is missing or malformed."""


class ModelError(OpticalError):
    """An encoder cannot be loaded or converted."""


class LeaseLost(StoreError):
    """The run no longer belongs to this worker and attempt (requeued after a stale heartbeat,
    reclaimed, or removed): the writer must stop and write nothing more."""
