"""Exceptions with messages that name the file, row, column or key at fault."""

from __future__ import annotations


class CrossAdaptError(Exception):
    """Base class of every error CrossAdapt raises on purpose."""


class ConfigError(CrossAdaptError, ValueError):
    """A config file or value is invalid (the message names the key)."""


class DataError(CrossAdaptError, ValueError):
    """Input data does not match the data contract (the message names the file, row or column)."""


class FeatureMapMismatch(CrossAdaptError, ValueError):
    """A checkpoint, dataset or config was built against another feature map."""


class CheckpointError(CrossAdaptError, ValueError):
    """A checkpoint is missing, truncated, corrupted or does not match what is asked of it."""


class ResourcesError(CrossAdaptError, RuntimeError):
    """The cluster lacks what the config asks for (GPUs, CPUs), and will not get it."""


class WeakTeacherError(CrossAdaptError, RuntimeError):
    """The trained teacher is no better than chance or a per-field click-rate model: nothing to distil."""


class OutDirInUse(CrossAdaptError, RuntimeError):
    """Another live run holds the output folder's lock (the message names its pid, host and command)."""
