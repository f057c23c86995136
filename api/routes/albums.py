"""Albums: create, list, read, upload images, and enhance (the contract's endpoint)."""

import logging
from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, File, Header, UploadFile, status
from fastapi.responses import JSONResponse
from sqlalchemy import func
from sqlmodel import Session, col, select

from api.deps import (
    CurrentUser,
    DecodeSlotsDep,
    EnhanceBody,
    LauncherDep,
    OwnedAlbum,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from api.errors import REPLAYED_HEADERS, error_body, rate_limit_headers, status_of
from api.schemas import (
    AlbumCreate,
    AlbumDetailOut,
    AlbumImageOut,
    AlbumOut,
    AlbumsOut,
    EnhanceJobRef,
    EnhanceQuoteOut,
    EnhanceRequest,
    EnhanceResponse,
    ErrorOut,
    ImageJobOut,
    ImageOut,
    RefusalOut,
    UploadOut,
)
from core.errors import InvalidRequest
from core.vocabulary import TIERS, OutputFormat
from db.models import Album, EnhancementJob, Image, Tier
from db.session import transaction
from services import enhance, idempotency
from services.enhance import BatchRequest
from services.enhance_album import EnhanceAlbum, EnhanceResult
from services.enhance_album import enhance_album as enhance_album_use_case
from services.uploads import (
    UploadedFile,
    UploadLimits,
    add_images,
    check_uploads,
    remove_originals,
    write_originals,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/albums", tags=["albums"])


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in codes}


def _image_counts(session: Session, album_ids: list[str]) -> dict[str, int]:
    rows = session.exec(
        select(Image.album_id, func.count()).where(col(Image.album_id).in_(album_ids)).group_by(col(Image.album_id))
    ).all()
    return {album_id: count for album_id, count in rows}


@router.post("", response_model=AlbumOut, status_code=status.HTTP_201_CREATED, responses=_errors(400, 401))
def create_album(body: AlbumCreate, user: CurrentUser, session: SessionDep) -> AlbumOut:
    """Create an album owned by the caller."""
    album = Album(owner_id=user.id, name=body.name, description=body.description)
    with transaction(session):
        session.add(album)
    return AlbumOut.model_validate(album)


@router.get("", response_model=AlbumsOut, responses=_errors(401))
def list_albums(user: CurrentUser, session: SessionDep) -> AlbumsOut:
    """The caller's albums, newest first."""
    albums = session.exec(
        select(Album).where(col(Album.owner_id) == user.id).order_by(col(Album.created_at).desc())
    ).all()
    counts = _image_counts(session, [album.id for album in albums])
    return AlbumsOut(
        albums=[
            AlbumOut.model_validate(album).model_copy(update={"image_count": counts.get(album.id, 0)})
            for album in albums
        ]
    )


@router.get("/{albumId}", response_model=AlbumDetailOut, responses=_errors(401, 403, 404))
def read_album(album: OwnedAlbum, session: SessionDep) -> AlbumDetailOut:
    """An album with its images and, per image, its enhancement jobs."""
    images = session.exec(
        select(Image).where(col(Image.album_id) == album.id).order_by(col(Image.sort_order), col(Image.id))
    ).all()
    jobs_by_image: dict[str | None, list[ImageJobOut]] = defaultdict(list)
    jobs = session.exec(
        select(EnhancementJob)
        .where(col(EnhancementJob.image_id).in_([image.id for image in images]))
        .order_by(col(EnhancementJob.created_at), col(EnhancementJob.position))
    ).all()
    for job in jobs:
        jobs_by_image[job.image_id].append(
            ImageJobOut(job_id=job.id, batch_id=job.batch_id, tier=job.tier, status=job.status)
        )
    return AlbumDetailOut(
        id=album.id,
        name=album.name,
        description=album.description,
        created_at=album.created_at,
        image_count=len(images),
        images=[
            AlbumImageOut(
                id=image.id,
                width=image.width,
                height=image.height,
                format=image.format,
                size_bytes=image.size_bytes,
                filename=image.original_filename,
                created_at=image.created_at,
                enhancement_jobs=jobs_by_image[image.id],
            )
            for image in images
        ],
    )


@router.post(
    "/{albumId}/images",
    response_model=UploadOut,
    status_code=status.HTTP_201_CREATED,
    responses=_errors(400, 401, 403, 404, 413),
)
def upload_images(
    album: OwnedAlbum,
    files: Annotated[list[UploadFile], File(description="One or more image files")],
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    decode_slots: DecodeSlotsDep,
) -> UploadOut:
    """Add images to an album; every file is checked before any is stored."""
    if not files:
        raise InvalidRequest("No files uploaded: send one or more files in the 'files' field")
    if len(files) > settings.max_files_per_upload:
        raise InvalidRequest(f"Too many files: at most {settings.max_files_per_upload} per upload")
    # A sync route: reading and checking run on a worker thread, never on the event loop.
    received = [UploadedFile(upload.file, upload.filename) for upload in files]
    limits = UploadLimits(settings.max_image_pixels, settings.max_upload_pixels)
    checked = check_uploads(received, limits, decode_slots)
    stored = write_originals(storage, album.id, checked)
    try:
        with transaction(session):
            images = add_images(session, album.id, stored)
    except BaseException:
        remove_originals(storage, stored)
        raise
    return UploadOut(images=[ImageOut.model_validate(image) for image in images])


def _enhance_body_schema() -> dict[str, Any]:
    # The body is parsed by hand (see api.deps.parse_enhance_request); its schema refers to the shared components.
    schema = EnhanceRequest.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


ENHANCE_BODY_SCHEMA = _enhance_body_schema()


def _enhance_response(result: EnhanceResult) -> dict[str, Any]:
    """The contract's 200 body."""
    response = EnhanceResponse(
        success=True,
        total_images=result.total_images,
        skipped=result.skipped,
        queued=len(result.queued),
        total_cost=result.total_cost,
        new_balance=result.new_balance,
        jobs=[
            EnhanceJobRef(image_id=queued.image_id, job_id=str(result.batch_id), enhancement_job_id=queued.job_id)
            for queued in result.queued
        ],
        batch_id=result.batch_id,
    )
    return response.model_dump(mode="json", by_alias=True)


@router.post(
    "/{albumId}/enhance",
    response_model=EnhanceResponse,
    responses=_errors(400, 401, 402, 403, 404, 409, 422, 429, 500),
    openapi_extra=ENHANCE_BODY_SCHEMA,
)
async def enhance_album(
    user: CurrentUser,
    body: EnhanceBody,
    album: OwnedAlbum,
    session: SessionDep,
    settings: SettingsDep,
    launcher: LauncherDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)] = None,
) -> JSONResponse:
    """Charge for and start the enhancement of an album's images (see the API contract)."""
    command = EnhanceAlbum(
        user_id=user.id,
        album_id=album.id,
        tier=Tier(body.tier),
        skip_already_enhanced=body.skip_already_enhanced,
        image_ids=tuple(body.image_ids) if body.image_ids is not None else None,
        output_format=body.output_format or OutputFormat.JPEG,
        keep_location=body.keep_location if body.keep_location is not None else settings.keep_location_default,
        idempotency_key=idempotency.validate_key(idempotency_key) if idempotency_key is not None else None,
        callback_url=body.callback_url,
    )
    outcome = await enhance_album_use_case(session, settings, launcher.start, command)
    headers = rate_limit_headers(outcome.rate_limit) if outcome.rate_limit is not None else {}
    if outcome.replayed:
        headers |= REPLAYED_HEADERS
    return JSONResponse(_enhance_response(outcome.result), headers=headers)


@router.post(
    "/{albumId}/enhance/quote",
    response_model=EnhanceQuoteOut,
    responses=_errors(400, 401, 403, 404),
    openapi_extra=ENHANCE_BODY_SCHEMA,
)
def quote_enhance(
    user: CurrentUser, body: EnhanceBody, album: OwnedAlbum, session: SessionDep, settings: SettingsDep
) -> EnhanceQuoteOut:
    """What `POST /albums/{albumId}/enhance` with this body would do now, charging nothing: the images it would
    count, skip and queue, what it would charge, and the error it would answer instead (`refusal`: its status
    and body), by the very rules of the enhance. Not counted against the rate limit."""
    image_ids = tuple(body.image_ids) if body.image_ids is not None else None
    request = BatchRequest(user.id, album.id, Tier(body.tier), body.skip_already_enhanced, image_ids)
    quote = enhance.quote(session, request, settings.max_batch_size)
    plan, refusal = quote.plan, quote.refusal
    queued = plan.to_enhance if plan is not None else []
    charge = plan.total_cost if plan is not None else 0
    return EnhanceQuoteOut(
        tier=body.tier,
        total_images=plan.total_images if plan is not None else 0,
        skipped=plan.skipped if plan is not None else 0,
        queued=len(queued),
        image_ids=[image.id for image in queued],
        cost_per_image=TIERS[Tier(body.tier)].cost,
        total_cost=charge,
        balance=quote.balance,
        new_balance=quote.balance - charge if refusal is None else quote.balance,
        max_batch_size=settings.max_batch_size,
        refusal=RefusalOut(status=status_of(refusal), **error_body(refusal)) if refusal is not None else None,
    )
