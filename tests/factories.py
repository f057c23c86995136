"""Small factories for users, albums, images and jobs, written straight to the database."""

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image as PILImage
from sqlalchemy import Engine
from sqlmodel import Session

from db.models import Album, Batch, EnhancementJob, Image, JobStatus, Tier, new_id
from db.session import session_scope
from services.enhance import BatchRequest, PlannedBatch, plan_and_charge
from services.users import create_user
from storage.base import Storage, original_key

FIXTURES = Path(__file__).parent / "fixtures" / "photos"


@dataclass(frozen=True)
class UserWithKey:
    id: str
    email: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def make_user(engine: Engine, tokens: int = 100, email: str | None = None) -> UserWithKey:
    """A user with an API key and, if tokens > 0, a grant in the ledger."""
    email = email or f"user-{new_id()[:10]}@example.com"
    with session_scope(engine) as session:
        user, api_key = create_user(session, email, tokens, "test:grant")
        return UserWithKey(user.id, email, api_key)


def make_album(engine: Engine, owner: UserWithKey, name: str = "Holidays") -> str:
    """An album owned by the user; returns its id."""
    with session_scope(engine) as session:
        album = Album(owner_id=owner.id, name=name)
        session.add(album)
        session.flush()
        return album.id


def jpeg_bytes(width: int = 96, height: int = 64, colour: tuple[int, int, int] = (180, 90, 40)) -> bytes:
    """A small JPEG with a gradient, so it is a real decodable photo."""
    image = PILImage.new("RGB", (width, height), colour)
    for x in range(width):
        image.putpixel((x, height // 2), (x * 255 // width, 128, 255 - x * 255 // width))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def photo_bytes(name: str = "rocket.jpg") -> bytes:
    """A real sample photograph shipped with the tests."""
    return (FIXTURES / name).read_bytes()


def make_image(engine: Engine, storage: Storage, album_id: str, data: bytes | None = None, sort_order: int = 0) -> str:
    """An image row with its original in storage; the bytes may be anything (corrupt on purpose)."""
    data = data if data is not None else jpeg_bytes()
    image_id = new_id()
    key = original_key(album_id, image_id, "JPEG")
    storage.put(key, data)
    with session_scope(engine) as session:
        session.add(
            Image(
                id=image_id,
                album_id=album_id,
                original_key=key,
                width=96,
                height=64,
                format="JPEG",
                size_bytes=len(data),
                sort_order=sort_order,
            )
        )
    return image_id


def make_images(engine: Engine, storage: Storage, album_id: str, count: int) -> list[str]:
    """Several valid images in order."""
    return [make_image(engine, storage, album_id, sort_order=i) for i in range(count)]


def make_completed_job(engine: Engine, user: UserWithKey, album_id: str, image_id: str, tier: Tier) -> str:
    """A finished enhancement of an image at a tier (as a past batch left it)."""
    return _make_job(engine, user, album_id, image_id, tier, JobStatus.COMPLETED)


def make_pending_job(engine: Engine, user: UserWithKey, album_id: str, image_id: str, tier: Tier, cost: int = 0) -> str:
    """An enhancement in flight at a tier."""
    return _make_job(engine, user, album_id, image_id, tier, JobStatus.PENDING, cost)


def make_failed_job(engine: Engine, user: UserWithKey, album_id: str, image_id: str, tier: Tier) -> str:
    """An enhancement that failed (and was refunded) at a tier."""
    return _make_job(engine, user, album_id, image_id, tier, JobStatus.FAILED)


def _make_job(
    engine: Engine, user: UserWithKey, album_id: str, image_id: str, tier: Tier, status: JobStatus, cost: int = 0
) -> str:
    batch_id = f"album-{album_id}-{new_id()[:12]}"
    with session_scope(engine) as session:
        session.add(
            Batch(id=batch_id, album_id=album_id, user_id=user.id, tier=tier, execution_mode="direct", tokens_charged=0)
        )
        session.flush()
        job = EnhancementJob(
            image_id=image_id, user_id=user.id, batch_id=batch_id, tier=tier, tokens_cost=cost, status=status
        )
        session.add(job)
        session.flush()
        return job.id


def make_album_with_images(
    engine: Engine, storage: Storage, images: int, tokens: int = 100
) -> tuple[UserWithKey, str, list[str]]:
    """A user with tokens owning an album of `images` valid images: (user, album id, image ids)."""
    user = make_user(engine, tokens=tokens)
    album = make_album(engine, user)
    return user, album, make_images(engine, storage, album, images)


def charge_batch(
    session: Session, user_id: str, album_id: str, tier: Tier = Tier.TIER_1K, execution_mode: str = "direct"
) -> PlannedBatch:
    """Charge a batch of the album's images as the enhance route does (in the caller's transaction)."""
    planned = plan_and_charge(session, BatchRequest(user_id, album_id, tier, True), 20, execution_mode)
    assert planned.batch is not None, "nothing to charge: the album has no image left to enhance"
    return planned
