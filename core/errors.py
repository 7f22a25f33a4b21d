"""Exceptions the engine raises on bad input.

Every error a user can cause derives from :class:`AtlasError`, so the CLI and the dashboard can show its message
in one line without a traceback, while programming errors still surface as ordinary exceptions.
"""


class AtlasError(Exception):
    """Base class for errors caused by user input or missing files; the message is meant for the user."""


class ConfigError(AtlasError, ValueError):
    """A configuration value is out of range or of the wrong kind."""


class DataError(AtlasError):
    """A dataset is unknown, missing on disk, or its files are malformed."""


class CheckpointError(AtlasError):
    """A checkpoint is missing, malformed, not safetensors, or does not match its architecture."""


class RegistryError(AtlasError):
    """The run registry does not know a run, or refuses a change (e.g. deleting a shipped model)."""


class TrainingDiverged(AtlasError):
    """The training loss stopped being a finite number: the run cannot go on, and resuming it would repeat the same
    steps (its Resume is not offered; a run's error names this class first, see core.jobs.queue)."""
