"""HTTP to Waldur: one session, transient answers retried close to the call, errors that carry the status.

python-waldur-client does the URLs, auth header and Link-header paging. Two things are changed by
subclassing its one request method: every request goes through one ``requests.Session`` (connection
reuse, our SSL and timeout settings), and a status that is not expected raises
:class:`WaldurHTTPError` carrying the status at once — the stock client sleeps 2 s and retries a 409
three times, which on a wrong-state order action only costs time (a 7.0-line server answers 409 where
the current one answers 400). Retries and unreachable requests are told to :data:`retry_observers` and
:data:`unreachable_observers` (the metrics subscribe there).
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, List, Optional

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry
from waldur_client import WaldurClient, WaldurClientException

from slurm_sync.waldur.concurrency import Limiter

log = logging.getLogger(__name__)
WaldurError = WaldurClientException  # every error a Waldur call raises, for callers that need not know the client
retry_observers: List[Callable[[str, str, str], None]] = []  # (method, url, status or "unreachable")
unreachable_observers: List[Callable[[str, str], None]] = []  # (method, url)


def _tell(observers: List[Callable[..., None]], *args: str) -> None:
    for observer in observers:
        try:
            observer(*args)
        except Exception:  # noqa: BLE001 - observing must never break the request
            log.debug("observer %r failed", observer, exc_info=True)


class WaldurHTTPError(WaldurClientException):
    def __init__(self, method: str, url: str, status: int, body: str):
        self.method, self.url, self.status, self.body = method.upper(), url, status, body
        super().__init__(f"Waldur answered {status} to {self.method} {url}: {body[:300]}")

    @property
    def wrong_state(self) -> bool:
        """400/409 on an action: the object is not in the state we thought."""
        return self.status in (400, 409)

    @property
    def transient(self) -> bool:
        return self.status >= 500 or self.status == 429

    @property
    def route_absent(self) -> bool:
        """404 for a path the server does not have (not "No Order matches the given query.")."""
        return self.status == 404 and "matches the given query" not in self.body


class WaldurUnavailable(WaldurClientException):
    """The server could not be reached (connection refused, timeout): retry later."""


RETRIED_STATUSES = (429, 500, 502, 503, 504)
RETRY_AFTER_CAP = 30.0  # seconds: a server asking for longer gets the task-level retry instead


def transient(error: BaseException) -> bool:
    """Waldur could not answer now (5xx, 429, no answer) even after the retries close to the call."""
    return isinstance(error, WaldurUnavailable) or (isinstance(error, WaldurHTTPError) and error.transient)


def unavailable_when_transient(function: Callable[..., Any], *args: Any) -> Any:
    """Run a Waldur call; a transient answer that outlived the retries close to the call is raised as
    :class:`WaldurUnavailable`, which the tasks' autoretry takes (a refusal is raised as it is)."""
    try:
        return function(*args)
    except WaldurHTTPError as error:
        if error.transient:
            raise WaldurUnavailable(str(error)) from error
        raise


class _BoundedRetry(Retry):
    """urllib3's retry, with the server's Retry-After capped and every retry counted in the metrics; with a
    :class:`~slurm_sync.waldur.concurrency.Limiter`, every answer retried is told to it (a Retry-After pauses
    the whole deployment) and a retry waits out such a pause first."""

    limiter: Limiter  # the deployment's: transient_retry makes a subclass per limiter (urllib3's new() keeps it)

    def get_retry_after(self, response):  # type: ignore[override]
        after = super().get_retry_after(response)
        return None if after is None else min(after, RETRY_AFTER_CAP)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        self.limiter.answered(*((response.status, self.get_retry_after(response)) if response is not None else (0,)))
        retry = super().increment(method, url, response, error, _pool, _stacktrace)  # raises when spent
        _tell(retry_observers, method or "?", url or "", str(response.status) if response is not None
              else "unreachable")
        return retry

    def sleep(self, response=None):  # type: ignore[override]
        super().sleep(response)
        self.limiter.wait_pause()


def transient_retry(attempts: int, limiter: Limiter) -> Retry:
    """Transient answers (5xx, 429, a refused or dropped connection) are retried close to the call.

    Every call slurm-sync makes is safe to repeat: reads are reads, and each write is either
    idempotent (backend_id, usage for a period: set, not added) or an order transition whose
    repeat after a lost answer is refused as a wrong state, which the caller answers by reading
    the order. So POST is retried too, including after a read error (the request may have
    reached the server). Waits 0, 1, 2 s (x jitter), Retry-After honoured up to 30 s; when the
    retries are spent the last answer is raised and the task-level retry takes over.
    """
    return type("_LimitedRetry", (_BoundedRetry,), {"limiter": limiter})(
        total=attempts, connect=attempts, read=attempts, status=attempts, other=0, redirect=0,
        status_forcelist=RETRIED_STATUSES, allowed_methods=None, backoff_factor=0.5, backoff_max=8.0,
        backoff_jitter=0.3, respect_retry_after_header=True, raise_on_status=False, raise_on_redirect=False)


class SessionClient(WaldurClient):
    """python-waldur-client with one session, our SSL/timeout settings, transient answers retried close
    to the call (:func:`transient_retry`) and no 409 sleep-retry."""

    def __init__(self, api_url: str, token: str, verify_ssl: bool, timeout: float, retries: int = 3,
                 limiter: Optional[Limiter] = None):
        super().__init__(api_url, token, user_agent="slurm-sync")
        self.session = requests.Session()
        self.limiter = limiter or Limiter(1)
        # as many kept-alive connections as the deployment lets requests be in flight
        adapter = HTTPAdapter(max_retries=transient_retry(retries, self.limiter), pool_maxsize=self.limiter.maximum)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(self.headers)
        self.session.verify = verify_ssl
        self.timeout = timeout
        self.request_count = 0
        self._count_lock = threading.Lock()  # requests go out from several threads

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One request, its retries close to the call included, in one of the deployment's in-flight slots."""
        with self._count_lock:
            self.request_count += 1
        try:
            with self.limiter.slot():
                response = self.session.request(method.upper(), url, **kwargs)
        except requests.RequestException as error:
            _tell(unreachable_observers, method, url)
            raise WaldurUnavailable(f"{method.upper()} {url}: {error}") from None
        if response.status_code not in RETRIED_STATUSES:  # the retried ones were told by the retry
            self.limiter.answered(response.status_code)
        return response

    def _make_request(self, method, url, valid_states, retry_count=3, prev_response_data=None, **kwargs):
        kwargs.pop("headers", None)
        kwargs.setdefault("timeout", self.timeout)
        response = self._send(method, url, **kwargs)
        if response.status_code not in valid_states:
            raise WaldurHTTPError(method, url, response.status_code, response.text)
        if method == "head":
            return response
        return response.json() if response.text else ""

    def _get_all(self, url, **kwargs):
        """Follow the Link header's rel="next" by name (the stock client reads it by position), only on the
        API's own scheme and host: the session sends the token with every request."""
        from urllib.parse import urljoin, urlsplit

        def origin(address: str) -> tuple:  # scheme, host, port: what decides where the token goes
            parts = urlsplit(address)
            scheme = parts.scheme.lower()
            return scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(scheme)

        params = kwargs.get("params")
        result: List[Any] = []
        while url:
            response = self._send("get", url, params=params, timeout=self.timeout)
            if response.status_code != 200:
                raise WaldurHTTPError("get", url, response.status_code, response.text)
            page = response.json()
            if not isinstance(page, list):
                return page
            result.extend(page)
            url = response.links.get("next", {}).get("url")
            if url:
                url = urljoin(response.url, url)  # a relative link is on the page's own host
                if origin(url) != origin(self.api_url):
                    raise WaldurClientException(
                        "Waldur's Link header points the next page of {} to {}://{}:{}, not to WALDUR_API_URL's "
                        "{}://{}:{}: not followed, the token goes to WALDUR_API_URL only (check the host and scheme "
                        "the server or its proxy puts in links)".format(
                            response.url.split("?")[0], *origin(url), *origin(self.api_url)))
            params = None  # the next link carries the query
        return result
