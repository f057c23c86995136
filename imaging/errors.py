"""The one error type the imaging engine raises for bad input."""


class InvalidImageError(ValueError):
    """The data is not an image we can process: unsupported, corrupt, truncated or too large.

    Retrying cannot help, so callers treat it as a permanent failure (refuse the upload, refund the job).
    """
