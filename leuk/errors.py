"""Errors a user can see. The CLI and the apps print their message as one line."""


class LeukError(Exception):
    """Base class of every error leuk reports to a user (no traceback needed)."""


class ImageReadError(LeukError, ValueError):
    """A file or upload that is not a readable image (corrupt, truncated, empty, too large, not an image)."""


class DatasetLayoutError(LeukError, FileNotFoundError):
    """A dataset folder that does not follow the expected on-disk layout."""


class ModelNotFoundError(LeukError, FileNotFoundError):
    """A model spec (Hub id, folder, demo name) that cannot be resolved or downloaded."""


class OODError(LeukError):
    """A detector that cannot be fitted (no training images, a model without pooled features, ...)."""
