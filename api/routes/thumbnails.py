"""Thumbnails of originals, for album grids."""

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Header, Response
from sqlmodel import Session

from api.deps import DecodeSlotsDep, OwnedImage, SessionDep, SettingsDep, StorageDep
from api.schemas import ErrorOut
from db.session import transaction
from services.thumbnails import etag, image_exists, thumbnail_media_type, thumbnail_of

router = APIRouter(prefix="/images", tags=["images"])

# An id always names the same bytes, so a browser may keep the thumbnail; `private`: it is the owner's photo.
CACHE_CONTROL = "private, max-age=31536000, immutable"


def _exists_now(session: Session, image_id: str) -> Callable[[], bool]:
    def check() -> bool:
        with transaction(session):
            return image_exists(session, image_id)

    return check


@router.get(
    "/{imageId}/thumbnail",
    response_class=Response,
    responses={
        200: {
            "content": {"image/jpeg": {}, "image/webp": {}},
            "description": "A JPEG (a WebP keeping transparency) whose longer side is at most THUMBNAIL_SIZE",
        },
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        401: {"model": ErrorOut},
        404: {"model": ErrorOut, "description": "No such image, or its original is not a readable image"},
    },
)
def read_thumbnail(
    image: OwnedImage,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    decode_slots: DecodeSlotsDep,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=500)] = None,
) -> Response:
    """A small JPEG of the original (WebP when it has transparency), made on first request (in one of the decode
    slots uploads use: 503 while they are all busy) and kept in storage."""
    tag = etag(image.id, settings.thumbnail_size)
    headers = {"ETag": tag, "Cache-Control": CACHE_CONTROL}
    if if_none_match is not None and tag in (value.strip() for value in if_none_match.split(",")):
        return Response(status_code=304, headers=headers)
    size, max_pixels = settings.thumbnail_size, settings.max_image_pixels
    # The ownership check's transaction ends here: a decode may take seconds and needs no connection meanwhile.
    session.close()
    data = thumbnail_of(
        storage, image.id, image.original_key, size, max_pixels, decode_slots, _exists_now(session, image.id)
    )
    return Response(data, media_type=thumbnail_media_type(data), headers=headers)
