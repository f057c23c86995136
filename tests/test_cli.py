"""The `album-enhance` command where a newcomer trips: a second `dev`, another directory, a wrong email."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cli import check_email, create_user, grant_tokens, main, refuse_busy_ports
from core.config import get_settings
from db import migrate
from storage.local import LocalStorage
from tests.conftest import engine_for, make_settings
from tests.factories import make_user

COMMAND = str(Path(sys.executable).parent / "album-enhance")


def run_cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed command in a clean environment (no DATABASE_URL, no .env) from `cwd`."""
    clean = {"PATH": os.environ["PATH"], "HOME": str(cwd), **env}
    return subprocess.run([COMMAND, *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=60)


def test_grant_from_another_directory_says_where_it_looked_and_creates_nothing(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "tokens", "grant", "alice@example.com", "10")
    assert result.returncode == 1
    expected = tmp_path / "data" / "album_enhance.db"
    assert result.stderr.strip().splitlines() == [
        f"no database at {expected}: run this in the project folder, or set DATABASE_URL to the service's database"
    ]
    assert not (tmp_path / "data").exists()


def test_a_second_dev_stops_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(tmp_path, "dev", "--direct", API_PORT=str(port))
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert f"API port {port} on 127.0.0.1 already in use" in line and "make dev" in line


def test_busy_temporal_ports_are_named_too() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"Temporal UI port {port}"):
            refuse_busy_ports({"API": ("127.0.0.1", 0), "Temporal UI": ("127.0.0.1", port)})


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@example.com", "with space@example.com", ""])
def test_users_create_refuses_what_is_not_an_email(email: str) -> None:
    with pytest.raises(SystemExit, match="not an email address"):
        main(["users", "create", email])


def test_email_check_accepts_ordinary_addresses() -> None:
    assert check_email("alice.smith+photos@example.co.uk") == "alice.smith+photos@example.co.uk"


def test_create_and_grant_say_which_database_they_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'new' / 'app.db'}", LocalStorage(tmp_path / "s"))
    with pytest.raises(SystemExit, match="pass --create"):
        create_user(settings, "bob@example.com", 5)
    assert not (tmp_path / "new" / "app.db").exists()
    capsys.readouterr()
    assert create_user(settings, "bob@example.com", 5, create=True).startswith("ae_")
    assert capsys.readouterr().err == f"database: {tmp_path / 'new' / 'app.db'} (new)\n"
    assert grant_tokens(settings, "bob@example.com", 7) == 12
    assert capsys.readouterr().err == f"database: {tmp_path / 'new' / 'app.db'}\n"


def test_grant_to_an_unknown_user_names_the_database(primary_db_url: str, tmp_path: Path) -> None:
    make_user(engine_for(primary_db_url))
    settings = make_settings(primary_db_url, LocalStorage(tmp_path / "s"))
    with pytest.raises(SystemExit, match="no user with email nobody@example.com in "):
        grant_tokens(settings, "nobody@example.com", 1)


def test_the_cli_says_only_what_it_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Creating the database runs the migrations; Alembic's INFO lines about them are not printed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'app.db'}")
    get_settings.cache_clear()
    try:
        main(["users", "create", "carol@example.com", "--tokens", "3", "--create"])
        main(["db", "upgrade"])
    finally:
        get_settings.cache_clear()
    out, err = capsys.readouterr()
    assert err == f"database: {tmp_path / 'app.db'} (new)\n"
    assert (
        out.splitlines()[0].startswith("ae_")
        and out.splitlines()[1] == f"database at revision {migrate.head_revision()}; storage marked"
    )
