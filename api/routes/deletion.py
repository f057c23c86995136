"""Deleting images and albums (refused with 409 while a batch could still touch them)."""

import logging

from fastapi import APIRouter, Response, status

from api.deps import OwnedAlbum, OwnedImage, SessionDep, SettingsDep, StorageDep
from api.schemas import ErrorOut
from db.session import transaction
from services.deletion import Removed, delete_album, delete_image, remove_objects
from storage.base import Storage

log = logging.getLogger(__name__)
router = APIRouter(tags=["albums"])

_RESPONSES: dict[int | str, dict[str, object]] = {code: {"model": ErrorOut} for code in (401, 403, 404, 409)}


def _remove_files(storage: Storage, removed: Removed) -> None:
    remove_objects(storage, removed.storage_keys)


@router.delete("/images/{imageId}", status_code=status.HTTP_204_NO_CONTENT, responses=_RESPONSES)
def remove_image(image: OwnedImage, session: SessionDep, storage: StorageDep, settings: SettingsDep) -> Response:
    """Delete an image, its thumbnail and its enhanced results. Its jobs stay in the batch history (`imageId`
    becomes null); nothing is refunded or charged. 409 while a batch that includes it has not ended."""
    with transaction(session):
        removed = delete_image(session, image, settings.thumbnail_size)
    _remove_files(storage, removed)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/albums/{albumId}", status_code=status.HTTP_204_NO_CONTENT, responses=_RESPONSES)
def remove_album(album: OwnedAlbum, session: SessionDep, storage: StorageDep, settings: SettingsDep) -> Response:
    """Delete an album with all its images and results. Its batches stay (`albumId` becomes null); nothing is
    refunded or charged. 409 while one of its batches has not ended."""
    with transaction(session):
        removed = delete_album(session, album, settings.thumbnail_size)
    _remove_files(storage, removed)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
