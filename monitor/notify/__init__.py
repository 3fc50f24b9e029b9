"""Notifiers: one module per channel. They deliver what they are given and decide nothing
(what to send and when is monitor/routing.py's)."""

from __future__ import annotations

from monitor.config import NotifierConfig
from monitor.notify.base import Channel, DeliveryError, Message, Outbox
from monitor.notify.dingtalk import DingTalk
from monitor.notify.email import Email
from monitor.notify.feishu import Feishu
from monitor.notify.slack import Slack
from monitor.notify.webhook import Webhook
from monitor.notify.wecom import WeCom

__all__ = ["Channel", "DeliveryError", "Message", "Outbox", "channel_of"]
_BY_TYPE = {"webhook": Webhook, "slack": Slack, "feishu": Feishu, "dingtalk": DingTalk, "wecom": WeCom}


def channel_of(config: NotifierConfig) -> Channel:
    """The channel a `[[alerts.notifiers]]` table describes, secrets read from the environment."""
    common = {"per_minute": config.per_minute, "timeout_s": config.timeout_s, "retries": config.retries}
    if config.type == "email":
        return Email(config.name, host=config.smtp_host, port=config.smtp_port, sender=config.sender, to=config.to,
                     starttls=config.starttls, username=config.username, password=config.resolved("password"),
                     ca_file=config.ca_file, **common)
    url = config.resolved("url")
    if config.type in ("feishu", "dingtalk"):
        common["secret"] = config.resolved("secret")
    return _BY_TYPE[config.type](config.name, url, **common)
