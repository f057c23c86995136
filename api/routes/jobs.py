"""Enhancement jobs and their results."""

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.deps import OwnedJob, StorageDep
from api.schemas import ErrorOut, JobOut
from core.errors import NotFound
from db.models import JobStatus

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("/{jobId}", response_model=JobOut, responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}})
def read_job(job: OwnedJob) -> JobOut:
    """One enhancement job."""
    return JobOut.model_validate(job)


@router.get(
    "/{jobId}/result",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}, 401: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
def read_result(job: OwnedJob, storage: StorageDep) -> FileResponse:
    """Stream the enhanced JPEG of a completed job."""
    if job.status != JobStatus.COMPLETED or job.enhanced_key is None:
        raise NotFound(f"No enhanced image: the job is {job.status}")
    path = storage.path_for(job.enhanced_key)
    if not path.is_file():
        raise NotFound("Enhanced image not found in storage")
    return FileResponse(path, media_type="image/jpeg")
