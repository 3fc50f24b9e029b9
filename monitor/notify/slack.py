"""Slack incoming webhook (https://api.slack.com/messaging/webhooks): `{"text": …}`."""

from __future__ import annotations

from monitor.notify.base import Channel, Message

ICONS = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}


class Slack(Channel):
    limit = 3900
    """A text over 4,000 characters is cut by Slack itself; we cut it first, and say so."""

    def __init__(self, name: str, url: str, **options) -> None:
        super().__init__(name, secrets=(url,), **options)
        self.url = url

    def send(self, message: Message) -> None:
        icon = ":white_check_mark:" if message.status == "resolved" else ICONS.get(message.severity, "")
        text = f"{icon} *{escape(message.title)}*\n{escape(message.text)}"
        self.post_json(self.url, {"text": self.fit(text)})


def escape(text: str) -> str:
    """Slack's three control characters: text from a log must not become a link or an @channel."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
