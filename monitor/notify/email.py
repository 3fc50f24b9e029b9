"""E-mail over SMTP (smtplib/email), with STARTTLS unless turned off, and a login when a
username is set."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from monitor.notify.base import Channel, DeliveryError, Message


class Email(Channel):
    limit = 100_000

    def __init__(self, name: str, *, host: str, port: int, sender: str, to: list[str], starttls: bool = True,
                 username: str | None = None, password: str | None = None, ca_file: str | None = None,
                 **options) -> None:
        super().__init__(name, secrets=(password,), **options)
        self.host, self.port, self.sender, self.to = host, port, sender, to
        self.starttls, self.username, self.password, self.ca_file = starttls, username, password, ca_file

    def send(self, message: Message) -> None:
        mail = EmailMessage()
        mail["Subject"] = message.title[:200]
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.to)
        mail.set_content(self.fit(message.text))
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=self.ca_file))
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise DeliveryError(self.mask(f"{type(exc).__name__}: {exc}")) from None
