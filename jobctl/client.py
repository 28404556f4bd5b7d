"""HTTP to jobd with the stdlib's http.client, over its Unix socket or loopback TCP.

Errors, all `JobctlError` (printed as `jobctl: <message>`, exit 1):

    JobctlError
    ├── ApiError      the daemon answered 4xx/5xx; its `{"error": {"code", "message"}}`
    └── Unreachable   nothing listens at the socket or URL
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit

from jobctl.signing import EMPTY_SHA256, signed_headers

REQUEST_TIMEOUT = 60.0  # a hung daemon should not hang a script; streams wait without one
CHUNK = 64 * 1024
UPLOAD_BLOCK = 1024 * 1024  # a file is sent in blocks this big (http.client's default: 8 KiB)
Query = Mapping[str, str | int | Sequence[str] | None]


class JobctlError(Exception):
    """jobctl failed."""


class ApiError(JobctlError):
    """The daemon refused the request."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Unreachable(JobctlError):
    """jobd can't be reached."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """Where jobd listens: a Unix socket, or an http(s) URL that needs a bearer token or a
    signing key (a key id and its secret) that signs each request."""

    socket: Path | None = None
    url: str | None = None
    token: str | None = None
    key_id: str | None = None
    secret: str | None = None

    def describe(self) -> str:
        return self.url if self.url else f"socket {self.socket}"

    def auth_headers(
        self, method: str, target: str, body_sha256: str = EMPTY_SHA256
    ) -> dict[str, str]:
        """What authenticates one request: nothing on the socket (the kernel says who we
        are), a signature when there is a signing key, else the bearer token."""
        if self.url is None:
            return {}
        if self.key_id and self.secret:
            return signed_headers(self.key_id, self.secret, method, target, body_sha256)
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over an AF_UNIX stream socket; the host name is only what goes in `Host:`."""

    def __init__(self, path: Path, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def check_url(url: str) -> str:
    """The URL, if it is http(s)://host[:port][/prefix]; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    try:
        _ = parts.port  # parsing the port is what validates it
    except ValueError as e:
        raise ValueError(f"{url!r}: {e}") from None
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: no query or fragment expected")
    return url


def load_token(data_dir: Path) -> str:
    """The TCP API's bearer token, from the `token` file jobd writes into its data directory."""
    path = data_dir / "token"
    try:
        token = path.read_text().strip()
    except OSError as e:
        raise JobctlError(
            f"no API token: can't read {path} ({e.strerror}); pass --token or set JOBD_TOKEN"
        ) from None
    if not token:
        raise JobctlError(f"no API token: {path} is empty; pass --token or set JOBD_TOKEN")
    return token


def segment(value: str) -> str:
    """An id as one path segment: `job-x/../..` must not walk the API's paths."""
    return quote(value, safe="")


class Client:
    """One connection per request: polling and scripts stay simple, and sockets are cheap."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def get(self, path: str, query: Query | None = None) -> dict[str, Any]:
        with self._exchange("GET", path, query, None, REQUEST_TIMEOUT) as response:
            return _json(response)

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        with self._exchange("POST", path, None, body, REQUEST_TIMEOUT) as response:
            return _json(response)

    def patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._exchange("PATCH", path, None, body, REQUEST_TIMEOUT) as response:
            return _json(response)

    def put(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._exchange("PUT", path, None, body, REQUEST_TIMEOUT) as response:
            return _json(response)

    def delete(self, path: str) -> None:
        with self._exchange("DELETE", path, None, None, REQUEST_TIMEOUT) as response:
            response.read()

    def upload(
        self, path: str, query: Query, source: BinaryIO, length: int, sha256: str | None = None
    ) -> dict[str, Any]:
        """POST `length` bytes of `source` as the request's body, a block at a time. A daemon
        that refuses it early (too large) may close before all is sent: its answer counts.
        A signed request signs the body's sha256: `sha256` when the caller has it already."""
        target = self._target(path, query)
        digest = EMPTY_SHA256
        if self.endpoint.key_id:
            digest = sha256 or file_sha256(source)
        connection = self._connect(REQUEST_TIMEOUT)
        connection.blocksize = UPLOAD_BLOCK
        headers = {
            **self._headers("POST", target, None, digest),
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
        }
        try:
            try:
                connection.request("POST", target, source, headers)
            except OSError as e:  # the daemon stopped reading: an answer may be waiting
                sent_error: OSError | None = e
            else:
                sent_error = None
            try:
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise self._lost(sent_error or e) from None
            if response.status >= 400:
                raise _api_error(response)
            with response:
                return _json(response)
        finally:
            connection.close()

    @contextmanager
    def stream(self, path: str, query: Query | None = None) -> Iterator[Stream]:
        """A response body to read as it arrives, with no timeout: a followed log waits."""
        connection = self._connect(None)
        sock = connection.sock  # kept: http.client drops its own reference on a closing reply
        try:
            response = self._send(connection, "GET", self._target(path, query), None)
            yield Stream(response, sock, self._lost)
        finally:
            connection.close()

    @contextmanager
    def _exchange(
        self,
        method: str,
        path: str,
        query: Query | None,
        body: Mapping[str, Any] | None,
        timeout: float | None,
    ) -> Iterator[http.client.HTTPResponse]:
        connection = self._connect(timeout)
        try:
            yield self._send(connection, method, self._target(path, query), body)
        finally:
            connection.close()

    def _send(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        target: str,
        body: Mapping[str, Any] | None,
    ) -> http.client.HTTPResponse:
        data = json.dumps(body).encode() if body is not None else None
        digest = hashlib.sha256(data).hexdigest() if data is not None else EMPTY_SHA256
        try:
            connection.request(method, target, data, self._headers(method, target, data, digest))
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as e:
            raise self._lost(e) from None
        if response.status >= 400:
            raise _api_error(response)
        return response

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        """Connect up front, so that a missing daemon reads apart from a broken exchange."""
        connection = self._connection(timeout)
        try:
            connection.connect()
        except OSError as e:
            connection.close()
            reason = e.strerror or str(e) or type(e).__name__
            raise Unreachable(
                f"can't connect to jobd at {self.endpoint.describe()}: {reason} (is jobd running?)"
            ) from None
        return connection

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.endpoint.url is None:
            assert self.endpoint.socket is not None
            return UnixHTTPConnection(self.endpoint.socket, timeout)
        parts = urlsplit(self.endpoint.url)
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout)
        return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)

    def _target(self, path: str, query: Query | None) -> str:
        prefix = urlsplit(self.endpoint.url).path.rstrip("/") if self.endpoint.url else ""
        wanted = {k: v for k, v in (query or {}).items() if v is not None}
        return prefix + path + (f"?{urlencode(wanted, doseq=True)}" if wanted else "")

    def _headers(
        self, method: str, target: str, data: bytes | None, body_sha256: str
    ) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "jobctl"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        return {**headers, **self.endpoint.auth_headers(method, target, body_sha256)}

    def _lost(self, error: Exception) -> JobctlError:
        reason = str(error) or type(error).__name__
        return JobctlError(f"lost the connection to jobd at {self.endpoint.describe()}: {reason}")


class Stream:
    """A response body read chunk by chunk; `abort()`, from another thread, ends it quietly."""

    def __init__(
        self,
        response: http.client.HTTPResponse,
        sock: socket.socket | None,
        lost: Callable[[Exception], JobctlError],
    ) -> None:
        self.response = response
        self.sock = sock
        self.lost = lost
        self.aborted = False

    def chunks(self) -> Iterator[bytes]:
        while True:
            try:
                chunk = self.response.read1(CHUNK)
            except (OSError, http.client.HTTPException) as e:
                if self.aborted:
                    return
                raise self.lost(e) from None
            if not chunk:
                return
            yield chunk

    def abort(self) -> None:
        """Wake the reader: a shutdown socket reads as end of file."""
        self.aborted = True
        if self.sock is not None:
            with suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


def file_sha256(source: BinaryIO) -> str:
    """A file's sha256, read from where it stands, which is where it is left."""
    start = source.tell()
    digest = hashlib.file_digest(source, "sha256").hexdigest()  # type: ignore[arg-type]
    source.seek(start)
    return digest


def _json(response: http.client.HTTPResponse) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(response.read())
    except ValueError as e:
        raise JobctlError(f"jobd sent a response that is not JSON: {e}") from None
    return doc


def _api_error(response: http.client.HTTPResponse) -> ApiError:
    """The daemon's own message when it sent one, else the HTTP status line and body."""
    with response:
        raw = response.read()
    try:
        error = json.loads(raw)["error"]
        return ApiError(str(error["message"]), status=response.status, code=str(error["code"]))
    except (ValueError, KeyError, TypeError):
        text = raw.decode(errors="replace").strip()[:200]
        message = f"HTTP {response.status} {response.reason}" + (f": {text}" if text else "")
        return ApiError(message, status=response.status, code="http_error")
