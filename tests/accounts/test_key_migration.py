"""Revision 0004 moves every user's API key to the api_key table: keys made before it keep working, and going
back down gives each user its key back."""

from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session

from db import migrate
from db.session import make_engine
from services.users import hash_secret, user_of_key


def test_keys_made_before_accounts_keep_working(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(engine, "0001")
    key = "ae_made-by-an-older-version"
    with engine.begin() as connection:
        connection.execute(
            text(
                'INSERT INTO "user" (id, email, api_key_hash, token_balance, created_at) '
                "VALUES ('u1', 'old@example.com', :hash, 0, '2026-11-30 10:00:00')"
            ),
            {"hash": hash_secret(key)},
        )
    migrate.upgrade(engine)
    with Session(engine) as session:
        user = user_of_key(session, key)
        assert user is not None and user.id == "u1"
        assert user.api_key_hash.startswith("retired:")  # the old column holds no key any more
        session.commit()
    migrate.downgrade(engine, "0001")
    with engine.connect() as connection:
        restored = connection.execute(text("SELECT api_key_hash FROM \"user\" WHERE id = 'u1'")).scalar_one()
    assert restored == hash_secret(key)
    engine.dispose()
