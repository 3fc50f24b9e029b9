"""WeCom (企业微信) group robot: `{"msgtype": "text", "text": {"content": …}}`, at most 2,048
bytes of content and 20 messages a minute."""

from __future__ import annotations

from monitor.notify.base import TRUNCATED, Channel, Message

LIMIT_BYTES = 2048


class WeCom(Channel):
    per_minute = 20

    def __init__(self, name: str, url: str, **options) -> None:
        super().__init__(name, secrets=(url,), **options)
        self.url = url

    def send(self, message: Message) -> None:
        text = f"{message.title}\n{message.text}"
        if len(text.encode()) > LIMIT_BYTES:
            room = LIMIT_BYTES - len(TRUNCATED.encode())
            text = text.encode()[:room].decode(errors="ignore") + TRUNCATED
        body = {"msgtype": "text", "text": {"content": text}}
        self.post_json(self.url, body, ok=lambda answer: isinstance(answer, dict) and answer.get("errcode", 0) == 0)
