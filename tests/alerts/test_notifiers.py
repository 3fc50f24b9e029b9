"""Notifiers against real servers on loopback: e-mail to an SMTP server (aiosmtpd) over
STARTTLS with a certificate made for the test, signed bots checked on arrival, a dead
webhook retried with backoff, size limits, DingTalk's rate, and no secret in any log line."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import ssl
import threading

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from monitor.config import NotifierConfig
from monitor.notify import Message, Outbox, channel_of
from monitor.notify.base import TRUNCATED
from monitor.notify.dingtalk import DingTalk
from monitor.notify.wecom import LIMIT_BYTES
from polling import wait_for
from receiver import Receiver

MESSAGE = Message(title="[CRITICAL] ling-1b: fault", text="#7 fault (critical): fault: oom — CUDA out of memory <!channel>",
                  severity="critical", run="ling-1b", alert_ids=(7,))


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class Mailbox:
    def __init__(self) -> None:
        self.mails: list = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 — aiosmtpd's name
        self.mails.append((envelope.mail_from, envelope.rcpt_tos, envelope.content.decode(), session.ssl))
        self.arrived.set()
        return "250 OK"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_alert_is_mailed_over_starttls_to_a_real_smtp_server(tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    mailbox = Mailbox()
    port = _port()
    server = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True)
    server.start()
    monkeypatch.setenv("TL_TEST_SMTP_PASSWORD", "hunter2")
    try:
        channel = channel_of(NotifierConfig(name="mail", type="email", smtp_host="127.0.0.1", smtp_port=port,
                                            sender="trainledger@example.org", to=["oncall@example.org"],
                                            ca_file=str(cert), password_env="TL_TEST_SMTP_PASSWORD"))
        outbox = Outbox(channel)
        outbox.put(MESSAGE)
        assert mailbox.arrived.wait(30)
        outbox.close()
    finally:
        server.stop()
    (sender, to, content, tls_session), = mailbox.mails
    assert (sender, to) == ("trainledger@example.org", ["oncall@example.org"])
    assert tls_session is not None  # the mail came over STARTTLS
    assert "Subject: [CRITICAL] ling-1b: fault" in content and "CUDA out of memory" in content


def test_a_dead_webhook_is_retried_with_backoff_and_its_url_never_logged(caplog):
    caplog.set_level(logging.INFO)
    with Receiver() as receiver:
        url = f"{receiver.url}/fail/T0KEN"
        outbox = Outbox(channel_of(NotifierConfig(name="dead", type="slack", url=url, retries=3)), backoff_s=0.2)
        outbox.put(MESSAGE)
        tries = wait_for(lambda: len(receiver.at("/fail/T0KEN")) == 4 and receiver.at("/fail/T0KEN"), timeout=30)
        wait_for(lambda: "gave up" in caplog.text, timeout=10)
        outbox.close()
    gaps = [b.at - a.at for a, b in zip(tries, tries[1:])]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 0.8, gaps  # doubling
    assert tries[0].body["text"].startswith(":rotating_light: *[CRITICAL] ling-1b: fault*")
    assert tries[0].body["text"].endswith("CUDA out of memory &lt;!channel&gt;")  # a log's text pings no one
    assert "T0KEN" not in caplog.text and receiver.url not in caplog.text
    assert "notify dead: gave up on alerts 7 after 4 tries: HTTP 500" in caplog.text


def test_messages_are_cut_to_each_channels_limit_and_dingtalk_keeps_its_rate():
    long = Message(title="t", text="x" * 50_000, severity="info", run="r", alert_ids=(1,))
    with Receiver({"dingtalk": "SECret"}) as receiver:
        channels = [channel_of(NotifierConfig(name=kind, type=kind, url=f"{receiver.url}/{kind}", secret=secret))
                    for kind, secret in (("wecom", None), ("dingtalk", "SECret"), ("feishu", None))]
        for channel in channels:
            channel.send(long)
        sizes = {r.path: r for r in receiver.received}
    assert len(sizes["/wecom"].body["text"]["content"].encode()) <= LIMIT_BYTES
    assert sizes["/wecom"].body["text"]["content"].endswith(TRUNCATED)
    assert len(sizes["/dingtalk"].body["text"]["content"]) == DingTalk.limit and sizes["/dingtalk"].signed
    assert len(sizes["/feishu"].body["content"]["text"]) == 4000
    assert channels[1].per_minute == 20  # DingTalk throttles past 20 a minute


def test_an_outbox_paces_a_channel_to_its_rate():
    """Three messages through a channel allowed two per (shortened) minute: the third waits."""
    with Receiver() as receiver:
        channel = channel_of(NotifierConfig(name="paced", type="webhook", url=f"{receiver.url}/paced", per_minute=2))
        outbox = Outbox(channel, rate_window_s=1.0)
        for _ in range(3):
            outbox.put(MESSAGE)
        sent = wait_for(lambda: len(receiver.at("/paced")) == 3 and receiver.at("/paced"), timeout=30)
        outbox.close()
    # the window counts from when each send began; arrival is a round trip later
    assert sent[1].at - sent[0].at < 0.5 and sent[2].at - sent[0].at >= 0.9
