"""The mailer the settings choose: SMTP for smtp:// and smtps:// URLs, the log when SMTP_URL is unset."""

import logging

import pytest

from services.mail import LogMailer, Mail, SmtpMailer, mailer_from, send_quietly
from storage.local import LocalStorage
from tests.accounts.helpers import body_of, free_port, smtp_server
from tests.conftest import make_settings


def test_without_smtp_url_mail_goes_to_the_log(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    mailer = mailer_from(make_settings("sqlite://", LocalStorage(tmp_path)))
    assert isinstance(mailer, LogMailer)
    with caplog.at_level(logging.INFO, logger="services.mail"):
        mailer.send(Mail("ada@example.com", "Confirm", "https://photos.example/account#/verify/abc"))
    assert "ada@example.com" in caplog.text and "/account#/verify/abc" in caplog.text


def test_smtp_url_sends_over_smtp(tmp_path) -> None:
    with smtp_server() as mailbox:
        mailer = mailer_from(make_settings("sqlite://", LocalStorage(tmp_path), smtp_url=mailbox.url))
        assert isinstance(mailer, SmtpMailer)
        mailer.send(Mail("ada@example.com", "Hello", "Body text"))
        message = mailbox.wait_for("ada@example.com")
    assert message["Subject"] == "Hello" and body_of(message).strip() == "Body text"
    assert message["From"] == "album-enhance <no-reply@localhost>" and message["Message-ID"]


def test_a_password_is_never_sent_without_tls(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    with smtp_server() as mailbox:  # a plain server: no STARTTLS
        url = mailbox.url.replace("smtp://", "smtp://ada:secret@")
        mailer = mailer_from(make_settings("sqlite://", LocalStorage(tmp_path), smtp_url=url))
        with pytest.raises(Exception, match="STARTTLS"):
            mailer.send(Mail("ada@example.com", "Hello", "Body"))
        assert mailbox.messages == []


def test_a_mail_server_that_is_down_is_logged_not_raised(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    mailer = SmtpMailer(f"smtp://127.0.0.1:{free_port()}", "a@example.com", timeout=2)
    with caplog.at_level(logging.ERROR, logger="services.mail"):
        send_quietly(mailer, Mail("ada@example.com", "Hello", "Body"))
    assert "could not send mail" in caplog.text


def test_other_schemes_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="smtp://"):
        mailer_from(make_settings("sqlite://", LocalStorage(tmp_path), smtp_url="http://mail.example"))
