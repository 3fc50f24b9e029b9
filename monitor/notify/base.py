"""Delivery: each channel's messages go out from a worker thread of their own, through a
bounded queue, so a dead or slow channel never holds up the watcher (a full queue drops the
message, logged). A failed send is retried with exponential backoff; a channel's rate limit
(messages a minute) is respected by waiting; a message is cut to the channel's size limit.
Each outcome is logged per alert with the channel's name — never its URL, key or password:
`Channel.mask` replaces every secret in any text that could reach a log line."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import httpx

from monitor.escape import printable

log = logging.getLogger("trainledger.notify")
logging.getLogger("httpx").setLevel(logging.WARNING)
"""httpx logs every request's full URL at INFO: a webhook's URL is its secret."""
TRUNCATED = "\n… (truncated)"


@dataclass(frozen=True)
class Message:
    """One notification: a group of alerts of one run (or their recovery)."""

    title: str
    text: str
    severity: str
    run: str
    alert_ids: tuple[int, ...] = ()
    status: str = "firing"
    """firing | resolved"""
    alerts: tuple[dict, ...] = field(default_factory=tuple)
    """Each alert's id, cause, severity and message, for channels that send structure (webhook)."""


class DeliveryError(RuntimeError):
    """A send failed; the message must not contain a secret."""


class Channel:
    """One configured destination. Subclasses `send` one message or raise DeliveryError."""

    limit: int = 4000
    """Most characters in a message's text."""
    per_minute: int | None = None

    def __init__(self, name: str, *, secrets: tuple[str | None, ...] = (), per_minute: int | None = None,
                 timeout_s: float = 10.0, retries: int = 4) -> None:
        self.name = name
        self.secrets = tuple(s for s in secrets if s)
        self.per_minute = per_minute or self.per_minute
        self.timeout_s = timeout_s
        self.retries = retries

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def fit(self, text: str, limit: int | None = None) -> str:
        limit = limit or self.limit
        return text if len(text) <= limit else text[:limit - len(TRUNCATED)] + TRUNCATED

    def send(self, message: Message) -> None:
        raise NotImplementedError

    def post_json(self, url: str, body: dict, ok=None) -> None:
        """POST `body`; DeliveryError (masked) on a transport error, a non-2xx answer or an
        answer `ok` rejects (the chat bots answer 200 with an error code)."""
        try:
            response = httpx.post(url, json=body, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise DeliveryError(self.mask(f"{type(exc).__name__}: {exc}")) from None
        if response.status_code // 100 != 2:
            raise DeliveryError(f"HTTP {response.status_code}: {self.mask(printable(response.text[:200]))}")
        if ok is not None:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if not ok(answer):
                raise DeliveryError(f"rejected: {self.mask(printable(response.text[:200]))}")


class Outbox:
    """A channel's worker thread and bounded queue."""

    def __init__(self, channel: Channel, *, capacity: int = 100, backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, rate_window_s: float = 60.0) -> None:
        self.channel = channel
        self.rate_window_s = rate_window_s
        """The channel's `per_minute` counts within this window (a minute, but in tests)."""
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.queue: queue.Queue[Message | None] = queue.Queue(maxsize=capacity)
        self.sent: deque[float] = deque()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"notify-{channel.name}", daemon=True)
        self.thread.start()

    def put(self, message: Message) -> None:
        """Never blocks: a full queue (a channel long dead) drops the message, logged."""
        try:
            self.queue.put_nowait(message)
        except queue.Full:
            log.error("notify %s: queue full, dropped the message for alerts %s", self.channel.name,
                      _ids(message))

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, each once more at most (no backoff: the watcher is stopping),
        waiting `timeout` seconds at most."""
        self.stopping.set()
        try:
            self.queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self.thread.join(timeout)

    def _pace(self) -> None:
        limit = self.channel.per_minute
        if not limit:
            return
        now = time.monotonic()
        while self.sent and self.sent[0] <= now - self.rate_window_s:
            self.sent.popleft()
        if len(self.sent) >= limit:
            self.stopping.wait(self.sent[0] + self.rate_window_s - now)
            self.sent.popleft()
        self.sent.append(time.monotonic())

    def _run(self) -> None:
        while (message := self.queue.get()) is not None:
            self._deliver(message)

    def _deliver(self, message: Message) -> None:
        channel = self.channel
        delay = self.backoff_s
        for attempt in range(channel.retries + 1):
            self._pace()
            try:
                channel.send(message)
            except DeliveryError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 — a channel bug must not kill its worker
                error = channel.mask(f"{type(exc).__name__}: {exc}")
            else:
                log.info("notify %s: sent %s for alerts %s (%s)", channel.name, message.status, _ids(message),
                         printable(message.run))
                return
            if attempt == channel.retries or self.stopping.is_set():
                log.error("notify %s: gave up on alerts %s after %d tries: %s", channel.name, _ids(message),
                          attempt + 1, error)
                return
            log.warning("notify %s: alerts %s, try %d failed (%s); again in %.1f s", channel.name,
                        _ids(message), attempt + 1, error, delay)
            if self.stopping.wait(delay):
                return
            delay = min(delay * 2, self.max_backoff_s)


def _ids(message: Message) -> str:
    return ",".join(str(i) for i in message.alert_ids) or "-"
