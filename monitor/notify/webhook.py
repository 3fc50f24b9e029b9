"""A generic JSON webhook: the message and its alerts as one JSON object."""

from __future__ import annotations

from dataclasses import asdict

from monitor.notify.base import Channel, Message


class Webhook(Channel):
    limit = 16000

    def __init__(self, name: str, url: str, **options) -> None:
        super().__init__(name, secrets=(url,), **options)
        self.url = url

    def send(self, message: Message) -> None:
        body = asdict(message)
        body["text"] = self.fit(message.text)
        body["alert_ids"] = list(message.alert_ids)
        body["alerts"] = list(message.alerts)
        self.post_json(self.url, body)
