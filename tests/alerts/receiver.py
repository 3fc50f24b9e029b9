"""A real HTTP server on loopback that keeps what the notifiers send, checking the Feishu and
DingTalk signatures the way those services do; `/fail…` paths answer 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    query: dict
    body: dict
    at: float
    signed: bool | None
    """True: a valid signature; False: a wrong one; None: the path is not a signed bot."""

    @property
    def text(self) -> str:
        content = self.body.get("content") or self.body.get("text") or {}
        if isinstance(content, dict):
            return content.get("text") or content.get("content") or ""
        return f"{self.body.get('title', '')}\n{content}"


def feishu_valid(body: dict, secret: str) -> bool:
    expected = base64.b64encode(hmac.new(f"{body.get('timestamp')}\n{secret}".encode(), b"",
                                         hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, str(body.get("sign", "")))


def dingtalk_valid(query: dict, secret: str) -> bool:
    timestamp = query.get("timestamp", [""])[0]
    expected = base64.b64encode(hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(),
                                         hashlib.sha256).digest()).decode()
    # parse_qs has already url-decoded `sign` once, as DingTalk's server does
    return bool(timestamp) and hmac.compare_digest(expected, query.get("sign", [""])[0])


class Receiver:
    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        self.secrets = secrets or {}
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 — http.server's name
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                signed = None
                if url.path.startswith("/feishu") and "feishu" in receiver.secrets:
                    signed = feishu_valid(body, receiver.secrets["feishu"])
                elif url.path.startswith("/dingtalk") and "dingtalk" in receiver.secrets:
                    signed = dingtalk_valid(query, receiver.secrets["dingtalk"])
                with receiver.lock:
                    receiver.received.append(Received(url.path, query, body, time.time(), signed))
                status = 500 if url.path.startswith("/fail") else 200
                answer = {"code": 0, "errcode": 0} if signed is not False else {"code": 19021, "errcode": 310000}
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
