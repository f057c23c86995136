"""Albums: create, list, read, upload images, and enhance (the contract's endpoint)."""

import logging
import time
from collections import defaultdict
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, File, Header, Response, UploadFile, status
from fastapi.responses import JSONResponse
from sqlalchemy import func
from sqlmodel import Session, col, select

from api.deps import CurrentUser, EnhanceBody, LauncherDep, OwnedAlbum, SessionDep, SettingsDep, StorageDep
from api.schemas import (
    AlbumCreate,
    AlbumDetailOut,
    AlbumImageOut,
    AlbumOut,
    AlbumsOut,
    EnhanceJobRef,
    EnhanceRequest,
    EnhanceResponse,
    ErrorOut,
    ImageJobOut,
    ImageOut,
    UploadOut,
)
from core.config import Settings
from core.errors import BatchStartFailed, InvalidRequest
from db.models import Album, BatchStatus, EnhancementJob, Image, Tier
from services import idempotency, rate_limit
from services.batches import close_unstarted, input_for, mark_started
from services.enhance import PlannedBatch, plan_and_charge
from services.launcher import BatchLauncher
from services.uploads import check_upload, store_uploads
from workflows.inputs import BatchEnhanceInput

log = logging.getLogger(__name__)
router = APIRouter(prefix="/albums", tags=["albums"])

START_FAILED = "Failed to start enhancement workflow. Tokens have been refunded."


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
    session.add(album)
    session.commit()
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
) -> UploadOut:
    """Add images to an album; every file is checked before any is stored."""
    if not files:
        raise InvalidRequest("No files uploaded: send one or more files in the 'files' field")
    if len(files) > settings.max_files_per_upload:
        raise InvalidRequest(f"Too many files: at most {settings.max_files_per_upload} per upload")
    checked = [check_upload(upload.file.read(), upload.filename, settings.max_image_pixels) for upload in files]
    images = store_uploads(session, storage, album.id, checked)
    try:
        session.commit()
    except BaseException:
        for image in images:
            storage.delete(image.original_key)
        raise
    return UploadOut(images=[ImageOut.model_validate(image) for image in images])


ENHANCE_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": EnhanceRequest.model_json_schema(by_alias=True)}},
    }
}


def _enhance_response(planned: PlannedBatch) -> EnhanceResponse:
    batch_id = planned.batch.id if planned.batch is not None else None
    return EnhanceResponse(
        success=True,
        total_images=planned.total_images,
        skipped=planned.skipped,
        queued=len(planned.jobs),
        total_cost=planned.total_cost,
        new_balance=planned.new_balance,
        jobs=[
            EnhanceJobRef(image_id=job.image_id, job_id=job.batch_id, enhancement_job_id=job.id) for job in planned.jobs
        ],
        batch_id=batch_id,
    )


@router.post(
    "/{albumId}/enhance",
    response_model=EnhanceResponse,
    responses=_errors(400, 401, 402, 403, 404, 409, 422, 429, 500),
    openapi_extra=ENHANCE_BODY_SCHEMA,
)
def enhance_album(
    user: CurrentUser,
    body: EnhanceBody,
    album: OwnedAlbum,
    session: SessionDep,
    settings: SettingsDep,
    launcher: LauncherDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)] = None,
) -> Any:
    """Charge for and start the enhancement of an album's images (see the API contract)."""
    key = idempotency.validate_key(idempotency_key) if idempotency_key is not None else None
    if key is not None:
        fingerprint = idempotency.request_fingerprint(album.id, body.model_dump())
        stored = idempotency.claim(session, user.id, key, fingerprint, settings.idempotency_ttl_seconds)
        if stored is not None:
            return JSONResponse(stored.body, status_code=stored.status_code, headers={"Idempotent-Replayed": "true"})
    try:
        if settings.rate_limit_enabled:
            limits = rate_limit.hit(
                session, user.id, "enhance", settings.rate_limit_requests, settings.rate_limit_window_seconds
            )
            session.commit()
            response.headers.update(limits.headers())
        planned = plan_and_charge(
            session,
            user_id=user.id,
            album_id=album.id,
            tier=Tier(body.tier),
            skip_already_enhanced=body.skip_already_enhanced,
            max_batch_size=settings.max_batch_size,
            execution_mode=settings.execution_mode,
            image_ids=body.image_ids,
        )
        result = _enhance_response(planned)
        if key is not None:
            idempotency.record_response(session, user.id, key, 200, result.model_dump(mode="json", by_alias=True))
        session.commit()
    except BaseException:
        session.rollback()
        if key is not None:
            idempotency.release(session, user.id, key)
            session.commit()
        raise
    if planned.batch is not None:
        _start_batch(session, settings, launcher, input_for(planned.batch, planned.jobs, settings), key)
    return result


def _start_batch(
    session: Session, settings: Settings, launcher: BatchLauncher, inp: BatchEnhanceInput, key: str | None
) -> None:
    """Start the charged batch; if that fails, refund it and answer the contract's 500."""
    if settings.debug_delay_before_start_seconds:
        time.sleep(settings.debug_delay_before_start_seconds)
    batch_id = inp.batch_id
    try:
        anyio.from_thread.run(launcher.start, inp)
    except Exception:
        log.exception("could not start batch %s; refunding it", batch_id)
        close_unstarted(session, batch_id, BatchStatus.FAILED, "The enhancement workflow could not be started")
        if key is not None:
            idempotency.record_response(session, inp.user_id, key, 500, {"error": START_FAILED})
        session.commit()
        raise BatchStartFailed(START_FAILED) from None
    mark_started(session, batch_id)
    session.commit()
