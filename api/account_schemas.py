"""Request and response bodies of the account routes (sign up, sign in, sessions, keys, export, deletion)."""

from datetime import datetime

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from api.schemas import NO_NUL, ApiModel

_IN = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)
# Bounded before any work: argon2 is never run on a megabyte of "password".
Email = Field(min_length=3, max_length=320, pattern=NO_NUL)
Password = Field(min_length=1, max_length=1000, pattern=NO_NUL)
Token = Field(min_length=1, max_length=200, pattern=NO_NUL)


class Credentials(ApiModel):
    model_config = _IN
    email: str = Email
    password: str = Password


class EmailIn(ApiModel):
    model_config = _IN
    email: str = Email


class TokenIn(ApiModel):
    model_config = _IN
    token: str = Token


class ResetIn(ApiModel):
    model_config = _IN
    token: str = Token
    password: str = Password


class DeleteAccountIn(ApiModel):
    """The confirmation: the current password, or (an account without one) the account's email."""

    model_config = _IN
    password: str | None = Field(default=None, max_length=1000, pattern=NO_NUL)
    email: str | None = Field(default=None, max_length=320, pattern=NO_NUL)


class PasswordChangeIn(ApiModel):
    model_config = _IN
    current_password: str = Password
    new_password: str = Password


class KeyIn(ApiModel):
    model_config = _IN
    name: str = Field(min_length=1, max_length=100, pattern=NO_NUL)


class MessageOut(ApiModel):
    message: str


class AccountOut(ApiModel):
    id: str
    email: str
    token_balance: int
    email_verified: bool
    has_password: bool
    created_at: datetime
    session_id: str | None = Field(description="The session this request came with; null with an API key")


class SignedInOut(ApiModel):
    account: AccountOut
    csrf_token: str = Field(description="Send it in the X-CSRF-Token header of every request that changes something")


class SessionOut(ApiModel):
    id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    user_agent: str | None
    address: str | None
    current: bool = False


class SessionsOut(ApiModel):
    sessions: list[SessionOut]


class KeyOut(ApiModel):
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown this once, only its hash is kept")


class KeysOut(ApiModel):
    keys: list[KeyOut]
