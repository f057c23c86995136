"""Albums, uploads and downloads over real HTTP."""

import io

from PIL import Image as PILImage

from services.deployment import MARKER_KEY
from tests.conftest import Harness
from tests.factories import jpeg_bytes, make_album, make_user, photo_bytes


def upload(h: Harness, album_id: str, headers: dict[str, str], *files: tuple[str, bytes, str]):
    return h.http.post(f"/api/albums/{album_id}/images", headers=headers, files=[("files", file) for file in files])


def stored_files(h: Harness) -> list[str]:
    """Every stored object but the deployment's storage marker."""
    root = h.storage.root
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []
    return [name for name in files if name != MARKER_KEY]


def test_create_list_and_read_albums(direct_harness: Harness) -> None:
    user = make_user(direct_harness.engine)
    created = direct_harness.http.post(
        "/api/albums", headers=user.headers, json={"name": "Summer", "description": "Beach days"}
    )
    assert created.status_code == 201
    album = created.json()
    assert (album["name"], album["description"], album["imageCount"]) == ("Summer", "Beach days", 0)
    listed = direct_harness.http.get("/api/albums", headers=user.headers).json()["albums"]
    assert [a["id"] for a in listed] == [album["id"]]
    detail = direct_harness.http.get(f"/api/albums/{album['id']}", headers=user.headers).json()
    assert detail["images"] == []


def test_album_name_is_required(direct_harness: Harness) -> None:
    user = make_user(direct_harness.engine)
    response = direct_harness.http.post("/api/albums", headers=user.headers, json={"name": ""})
    assert response.status_code == 400
    assert "name" in response.json()["error"]


def test_me_and_ledger(direct_harness: Harness) -> None:
    user = make_user(direct_harness.engine, tokens=42)
    me = direct_harness.http.get("/api/me", headers=user.headers).json()
    assert me == {"id": user.id, "email": user.email, "tokenBalance": 42}
    ledger = direct_harness.http.get("/api/tokens/transactions", headers=user.headers).json()["transactions"]
    assert [(t["amount"], t["type"], t["balanceAfter"]) for t in ledger] == [(42, "GRANT", 42)]


def test_upload_stores_images_and_serves_the_original(direct_harness: Harness) -> None:
    user = make_user(direct_harness.engine)
    album = make_album(direct_harness.engine, user)
    rocket = photo_bytes("rocket.jpg")
    response = upload(
        direct_harness,
        album,
        user.headers,
        ("rocket.jpg", rocket, "image/jpeg"),
        ("cat.png", photo_bytes("chelsea.png"), "image/png"),
    )
    assert response.status_code == 201, response.text
    images = response.json()["images"]
    assert [(i["width"], i["height"], i["format"]) for i in images] == [(640, 427, "JPEG"), (451, 300, "PNG")]
    assert images[0]["sizeBytes"] == len(rocket)
    original = direct_harness.http.get(f"/api/images/{images[0]['id']}/original", headers=user.headers)
    assert original.status_code == 200
    assert original.headers["content-type"] == "image/jpeg"
    assert original.content == rocket
    detail = direct_harness.http.get(f"/api/albums/{album}", headers=user.headers).json()
    assert [i["id"] for i in detail["images"]] == [i["id"] for i in images]


def test_a_bad_file_refuses_the_whole_upload(direct_harness: Harness) -> None:
    user = make_user(direct_harness.engine)
    album = make_album(direct_harness.engine, user)
    good = jpeg_bytes()
    for name, data in [("notes.txt", b"hello, not an image"), ("cut.jpg", good[: len(good) // 2])]:
        response = upload(
            direct_harness, album, user.headers, ("ok.jpg", good, "image/jpeg"), (name, data, "image/jpeg")
        )
        assert response.status_code == 400
        assert name in response.json()["error"]
    assert stored_files(direct_harness) == []
    assert direct_harness.http.get(f"/api/albums/{album}", headers=user.headers).json()["images"] == []


def test_pixel_bomb_is_refused(direct_harness: Harness) -> None:
    user = make_user(direct_harness.engine)
    album = make_album(direct_harness.engine, user)
    bomb = io.BytesIO()
    PILImage.new("1", (12000, 12000)).save(bomb, "PNG")
    response = upload(direct_harness, album, user.headers, ("bomb.png", bomb.getvalue(), "image/png"))
    assert response.status_code == 400
    assert "pixels" in response.json()["error"]
    assert stored_files(direct_harness) == []


def test_upload_filenames_never_reach_storage_paths(direct_harness: Harness) -> None:
    user = make_user(direct_harness.engine)
    album = make_album(direct_harness.engine, user)
    response = upload(direct_harness, album, user.headers, ("../../etc/evil.jpg", jpeg_bytes(), "image/jpeg"))
    assert response.status_code == 201
    [image] = response.json()["images"]
    assert stored_files(direct_harness) == [f"originals/{album}/{image['id']}.jpeg"]
    detail = direct_harness.http.get(f"/api/albums/{album}", headers=user.headers).json()
    assert detail["images"][0]["filename"] == "evil.jpg"


def test_upload_to_someone_elses_album_is_403(direct_harness: Harness) -> None:
    owner, other = make_user(direct_harness.engine), make_user(direct_harness.engine)
    album = make_album(direct_harness.engine, owner)
    response = upload(direct_harness, album, other.headers, ("a.jpg", jpeg_bytes(), "image/jpeg"))
    assert response.status_code == 403
    assert stored_files(direct_harness) == []


def test_oversized_body_is_413(db_url: str, tmp_path) -> None:
    from storage.local import LocalStorage
    from tests.conftest import LiveServer, engine_for, make_settings

    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(db_url, storage, max_upload_bytes=50_000)
    user = make_user(engine_for(db_url))
    album = make_album(engine_for(db_url), user)
    with LiveServer(settings) as api:
        big = photo_bytes("rocket.jpg")
        response = api.http.post(f"/api/albums/{album}/images", headers=user.headers, files=[("files", ("r.jpg", big))])
        assert response.status_code == 413
        assert "too large" in response.json()["error"]

        head = b'--x\r\nContent-Disposition: form-data; name="files"; filename="r.jpg"\r\n\r\n'
        multipart = head + big + b"\r\n--x--\r\n"

        def chunks():
            # No Content-Length: the limit must cut the stream itself.
            for start in range(0, len(multipart), 16_384):
                yield multipart[start : start + 16_384]

        streamed = api.http.post(
            f"/api/albums/{album}/images",
            headers={**user.headers, "Content-Type": "multipart/form-data; boundary=x"},
            content=chunks(),
        )
        assert streamed.status_code == 413
