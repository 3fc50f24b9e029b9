"""Feishu / Lark custom bot. With a signing secret set, each request carries `timestamp` and
`sign` = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b"")), as the bot's security
settings require (open.feishu.cn, custom bot guide)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from monitor.notify.base import Channel, Message


def feishu_sign(timestamp: int, secret: str) -> str:
    digest = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class Feishu(Channel):
    limit = 4000
    """The bot takes requests up to 20 KB; a CJK character is 3 bytes in UTF-8."""

    def __init__(self, name: str, url: str, secret: str | None = None, **options) -> None:
        super().__init__(name, secrets=(url, secret), **options)
        self.url, self.secret = url, secret

    def send(self, message: Message) -> None:
        body: dict = {"msg_type": "text", "content": {"text": self.fit(f"{message.title}\n{message.text}")}}
        if self.secret:
            timestamp = int(time.time())
            body.update(timestamp=str(timestamp), sign=feishu_sign(timestamp, self.secret))
        self.post_json(self.url, body, ok=lambda answer: isinstance(answer, dict)
                       and answer.get("code", answer.get("StatusCode", 0)) == 0)
