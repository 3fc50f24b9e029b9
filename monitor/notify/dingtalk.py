"""DingTalk custom robot, signed: the URL gets `timestamp` (ms) and `sign` =
urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"))). DingTalk throttles a
robot past 20 messages a minute, so that is the default rate."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse

from monitor.notify.base import Channel, Message


def dingtalk_sign(timestamp_ms: int, secret: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


class DingTalk(Channel):
    limit = 6000
    """Requests up to 20,000 bytes; a CJK character is 3 bytes in UTF-8."""
    per_minute = 20

    def __init__(self, name: str, url: str, secret: str | None = None, **options) -> None:
        super().__init__(name, secrets=(url, secret), **options)
        self.url, self.secret = url, secret

    def send(self, message: Message) -> None:
        url = self.url
        if self.secret:
            timestamp = int(time.time() * 1000)
            url += f"{'&' if '?' in url else '?'}timestamp={timestamp}&sign={dingtalk_sign(timestamp, self.secret)}"
        body = {"msgtype": "text", "text": {"content": self.fit(f"{message.title}\n{message.text}")}}
        self.post_json(url, body, ok=lambda answer: isinstance(answer, dict) and answer.get("errcode", 0) == 0)
