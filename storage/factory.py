"""The one place a storage backend is chosen from the settings."""

from pathlib import Path
from urllib.parse import urlsplit

from core.config import Settings
from core.errors import StartupRefused
from storage.base import Storage
from storage.local import LocalStorage
from storage.s3 import S3Location, S3Storage


def storage_from(settings: Settings) -> Storage:
    """S3-compatible storage for STORAGE_URL=s3://bucket/prefix, local files for file://path or STORAGE_DIR."""
    url = settings.storage_url
    if not url:
        return LocalStorage(settings.storage_dir)
    if url.startswith("file://"):
        return LocalStorage(Path(url.removeprefix("file://")))
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise StartupRefused(f"STORAGE_URL must be s3://bucket[/prefix] or file://path, not {url!r}")
    return S3Storage(
        S3Location(
            bucket=parts.netloc,
            prefix=parts.path.strip("/"),
            endpoint_url=settings.storage_endpoint_url,
            public_endpoint_url=settings.storage_public_endpoint_url,
            region=settings.storage_region,
        )
    )
