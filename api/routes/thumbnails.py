"""Thumbnails of originals, for album grids."""

from typing import Annotated

from fastapi import APIRouter, Header, Response

from api.deps import OwnedImage, SettingsDep, StorageDep
from api.schemas import ErrorOut
from core.errors import NotFound
from imaging import InvalidImageError
from services.thumbnails import etag, thumbnail_media_type, thumbnail_of
from storage.local import ObjectNotFound

router = APIRouter(prefix="/images", tags=["images"])

# An id always names the same bytes, so a browser may keep the thumbnail; `private`: it is the owner's photo.
CACHE_CONTROL = "private, max-age=31536000, immutable"


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
        404: {"model": ErrorOut},
    },
)
def read_thumbnail(
    image: OwnedImage,
    storage: StorageDep,
    settings: SettingsDep,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=500)] = None,
) -> Response:
    """A small JPEG of the original (WebP when it has transparency), made on first request and kept in storage."""
    tag = etag(image.id, settings.thumbnail_size)
    headers = {"ETag": tag, "Cache-Control": CACHE_CONTROL}
    if if_none_match is not None and tag in (value.strip() for value in if_none_match.split(",")):
        return Response(status_code=304, headers=headers)
    try:
        data = thumbnail_of(storage, image.id, image.original_key, settings.thumbnail_size, settings.max_image_pixels)
    except ObjectNotFound as exc:
        raise NotFound("Original image not found in storage") from exc
    except InvalidImageError as exc:
        raise NotFound("No thumbnail: the original is not a readable image") from exc
    return Response(data, media_type=thumbnail_media_type(data), headers=headers)
