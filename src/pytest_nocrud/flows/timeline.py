"""Request timeline: what an httpx client sent, how long it took, and what came back.

A failing flow is only debuggable if you can see the HTTP conversation that led to it. ``RequestLog``
hooks into ``httpx.Client`` via ``event_hooks`` and records every request (method, path with query,
status, milliseconds, short masked body excerpts). Flows take a ``mark()`` before a step and ask for
``since(mark)`` after it to list that step's requests; the plugin prints ``format_table()`` when a test
fails. Credentials never reach the log: ``Authorization``/``Cookie``/``X-CSRFToken`` header values and
JSON/form fields that look like passwords, secrets or tokens are masked before anything is stored.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

__all__ = [
    "EXCERPT_CHARS",
    "MASK",
    "RequestLog",
    "RequestRecord",
    "describe_response",
    "format_table",
    "log_for",
    "make_client",
    "mark_expected",
    "mask_body",
]

EXCERPT_CHARS = 500
MASK = "***"

#: Header values that are credentials; recorded as ``***``.
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-csrftoken", "x-api-key"}
)
#: A JSON/form field whose lower-cased name contains one of these is masked.
SENSITIVE_FIELD_PARTS = ("password", "secret", "token")

# Which RequestLog a client reports to, so flows can find it without the caller passing it around.
_LOGS: weakref.WeakKeyDictionary[httpx.Client, RequestLog] = weakref.WeakKeyDictionary()
_RECORD_KEY = "nocrud_record"


@dataclasses.dataclass
class RequestRecord:
    """One request as the log saw it. ``status`` is ``None`` while (or if) no response arrived."""

    method: str
    path: str
    started: float
    client: str = ""
    status: int | None = None
    ms: float | None = None
    request_headers: dict[str, str] = dataclasses.field(default_factory=dict)
    request_excerpt: str = ""
    response_excerpt: str = ""
    expected: bool = False  # the test asserted this status (``expect_status``): a 4xx here is no error

    @property
    def failed(self) -> bool:
        """No response, or an HTTP error status (>= 400)."""
        return self.status is None or self.status >= 400

    def line(self) -> str:
        """``POST /api/actors/ -> 201 (12.3 ms)``; used in short listings."""
        status = "no response" if self.status is None else str(self.status)
        ms = "" if self.ms is None else f" ({self.ms:.1f} ms)"
        who = f"[{self.client}] " if self.client else ""
        return f"{who}{self.method} {self.path} -> {status}{ms}"

    def detail(self) -> str:
        """Multi-line description with body excerpts, for the failing request of a report."""
        lines = [self.line()]
        if self.request_excerpt:
            lines.append(f"  request body:  {self.request_excerpt}")
        if self.response_excerpt:
            lines.append(f"  response body: {self.response_excerpt}")
        return "\n".join(lines)


def _excerpt(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


def _sensitive_field(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in SENSITIVE_FIELD_PARTS)


def _mask_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (MASK if isinstance(k, str) and _sensitive_field(k) else _mask_json(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask_json(v) for v in value]
    return value


_FORM_RE = re.compile(r"^[^=&\s]+=[^&]*(&[^=&\s]+=[^&]*)*$")


def mask_body(raw: bytes, content_type: str = "", *, limit: int = EXCERPT_CHARS) -> str:
    """Render a body as a short, credential-free excerpt (JSON and form bodies get fields masked)."""
    if not raw:
        return ""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(raw)} bytes of binary data>"
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        try:
            return _excerpt(json.dumps(_mask_json(json.loads(text)), ensure_ascii=False), limit)
        except ValueError:
            pass
    if "x-www-form-urlencoded" in content_type or _FORM_RE.match(text.strip()):
        pairs = parse_qsl(text, keep_blank_values=True)
        if pairs:
            masked = [(k, MASK if _sensitive_field(k) else v) for k, v in pairs]
            return _excerpt(urlencode(masked, safe="*"), limit)
    # Unknown text: mask anything shaped like ``password=...`` or ``"token": "..."`` anyway.
    text = re.sub(
        r"(?i)((?:password|secret|token)[\w-]*[\"']?\s*[:=]\s*[\"']?)[^\"'&,\s}]+", rf"\g<1>{MASK}", text
    )
    return _excerpt(text, limit)


def _masked_headers(headers: httpx.Headers) -> dict[str, str]:
    return {k: (MASK if k.lower() in SENSITIVE_HEADERS else v) for k, v in headers.items()}


def _path_of(url: httpx.URL) -> str:
    raw = url.raw_path.decode("ascii", "replace")
    return raw or "/"


def _request_body(request: httpx.Request, limit: int) -> str:
    try:
        content = request.content
    except httpx.RequestNotRead:
        return "<streamed body>"
    return mask_body(content, request.headers.get("content-type", ""), limit=limit)


class RequestLog:
    """Thread-safe, append-only record of the requests made by one or more httpx clients.

    Attach it with :meth:`attach` (``make_client`` does that). One log may serve several clients (a
    multi-user flow): each gets a ``label`` that shows up in the table so you can tell who did what.
    """

    def __init__(self, *, excerpt_chars: int = EXCERPT_CHARS, clock: Callable[[], float] = time.perf_counter):
        self.excerpt_chars = excerpt_chars
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: list[RequestRecord] = []
        #: Results of the flows run with this log (``Flow.run`` appends): the run report's CRUD matrix.
        self.flow_results: list[Any] = []
        #: Where each fresh database swapped in mid-test (``nocrud_db.reset()``) began, as positions.
        self.database_marks: list[int] = []

    # -- recording -------------------------------------------------------------------------------

    def attach(self, client: httpx.Client, *, label: str = "") -> None:
        """Install request/response hooks on ``client``; later ``log_for(client)`` returns this log.

        The response hook reads the body (``response.read()``), so ``ms`` covers the full download and
        the excerpt is available; streaming responses are therefore buffered while a log is attached.
        """

        def on_request(request: httpx.Request) -> None:
            record = RequestRecord(
                method=request.method,
                path=_path_of(request.url),
                started=self._clock(),
                client=label,
                request_headers=_masked_headers(request.headers),
                request_excerpt=_request_body(request, self.excerpt_chars),
            )
            request.extensions[_RECORD_KEY] = record
            with self._lock:
                self._entries.append(record)

        def on_response(response: httpx.Response) -> None:
            request = response.request
            response.read()
            record = request.extensions.get(_RECORD_KEY)
            if not isinstance(record, RequestRecord):  # hook installed mid-request; record it now
                record = RequestRecord(request.method, _path_of(request.url), self._clock(), client=label)
                with self._lock:
                    self._entries.append(record)
            record.status = response.status_code
            record.ms = (self._clock() - record.started) * 1000.0
            # Hooks added after ours (e.g. the CSRF hook) may have changed the request: re-read it.
            record.request_headers = _masked_headers(request.headers)
            record.response_excerpt = mask_body(
                response.content, response.headers.get("content-type", ""), limit=self.excerpt_chars
            )

        hooks = client.event_hooks
        client.event_hooks = {
            "request": [*hooks.get("request", []), on_request],
            "response": [*hooks.get("response", []), on_response],
        }
        _LOGS[client] = self

    # -- reading ---------------------------------------------------------------------------------

    @property
    def entries(self) -> list[RequestRecord]:
        """A snapshot copy of everything recorded so far, oldest first."""
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def mark(self) -> int:
        """An opaque position; ``since(mark)`` returns what was recorded after it."""
        return len(self)

    def new_database(self) -> None:
        """The requests after this ran on a fresh database (``nocrud_db.reset()``)."""
        self.database_marks.append(len(self))

    def since(self, mark: int) -> list[RequestRecord]:
        """Entries recorded after ``mark`` (e.g. the requests of one flow step)."""
        with self._lock:
            return list(self._entries[mark:])

    def last_failure(self) -> RequestRecord | None:
        """The most recent request that got no response or an error status."""
        for record in reversed(self.entries):
            if record.failed:
                return record
        return None

    def format_table(self, *, max_rows: int = 50) -> str:
        """The whole log as a compact table (see :func:`format_table`)."""
        return format_table(self.entries, max_rows=max_rows)


def format_table(
    entries: Iterable[RequestRecord], *, max_rows: int = 50, indent: str = "  ", number_from: int = 1
) -> str:
    """Render ``#  method  path  status  ms`` rows; long logs keep the first and last rows."""
    rows = list(entries)
    if not rows:
        return f"{indent}(no requests)"
    shown: list[tuple[int, RequestRecord] | None] = list(enumerate(rows, number_from))
    if len(rows) > max_rows:
        head = max_rows // 2
        shown = [*shown[:head], None, *shown[len(rows) - (max_rows - head) :]]
    with_client = any(r.client for r in rows)
    path_width = min(60, max(len("path"), *(len(r.path) for r in rows)))
    header = f"{'#':>3}  {'method':<7}"
    if with_client:
        header += f" {'client':<12}"
    header += f" {'path':<{path_width}} {'status':>6} {'ms':>8}"
    lines = [indent + header]
    for item in shown:
        if item is None:
            lines.append(f"{indent}{'...':>3}  ({len(rows) - max_rows} more)")
            continue
        number, r = item
        path = r.path if len(r.path) <= path_width else r.path[: path_width - 3] + "..."
        status = "-" if r.status is None else str(r.status)
        ms = "-" if r.ms is None else f"{r.ms:.1f}"
        line = f"{number:>3}  {r.method:<7}"
        if with_client:
            line += f" {r.client[:12]:<12}"
        line += f" {path:<{path_width}} {status:>6} {ms:>8}"
        lines.append(indent + line)
    return "\n".join(lines)


def mark_expected(response: httpx.Response) -> None:
    """Remember that the test asserted this response's status, so reports do not paint it as an error."""
    record = response.request.extensions.get(_RECORD_KEY)
    if isinstance(record, RequestRecord):
        record.expected = True


def log_for(client: object) -> RequestLog | None:
    """The log attached to ``client`` by :meth:`RequestLog.attach`, if any."""
    if isinstance(client, httpx.Client):
        return _LOGS.get(client)
    return None


def describe_response(response: httpx.Response, *, limit: int = EXCERPT_CHARS) -> str:
    """``METHOD /path -> status`` plus a masked body excerpt, for assertion messages."""
    request = response.request
    body = mask_body(response.content, response.headers.get("content-type", ""), limit=limit)
    text = f"{request.method} {_path_of(request.url)} -> {response.status_code}"
    return f"{text}\n  response body: {body}" if body else text


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One verifying SSL context for every client of the process.

    httpx builds a fresh context (loading the CA bundle) per client unless given one: ~20 ms each,
    measured here -- as much as a whole flow step, paid per test and per extra logged-in user.
    """
    return httpx.create_ssl_context()


def make_client(
    base_url: str,
    *,
    timeout: float = 10.0,
    log: RequestLog | None = None,
    label: str = "",
    headers: Mapping[str, str] | None = None,
) -> httpx.Client:
    """The client behind ``nocrud_client``: bound to ``base_url``, bounded timeouts, ``log`` attached.

    Connecting to a local app that is up takes milliseconds, so connect/pool waits are capped at 2 s
    (a dead app fails fast); reads get the full ``timeout`` because real endpoints may be slow.
    Redirects are not followed: an API test should see the 301/302 it got.
    """
    short = min(2.0, timeout)
    client = httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=short, pool=short),
        headers=dict(headers or {}),
        follow_redirects=False,
        verify=shared_ssl_context(),
    )
    if log is not None:
        log.attach(client, label=label)
    return client
