"""User-facing errors: the CLI prints them as one line and exits non-zero, without a traceback."""


class FeredgeError(Exception):
    """An error caused by input the user can fix (a file, a field, an option)."""


class DataError(FeredgeError):
    """A dataset file or record is not what the loader expects."""


class CheckpointError(FeredgeError):
    """A checkpoint does not match the model it is loaded into."""
