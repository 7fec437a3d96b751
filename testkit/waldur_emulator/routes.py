"""Route table: ``@route("GET", "marketplace-orders/{uuid}/")`` registers a handler.

A handler gets a ``Request`` plus the path parameters and returns a ``Response``
(or raises ``errors.ApiError``). ``enabled`` takes the active profile and hides a
route (404, as an absent Django route) where that generation lacks it.
"""
import re
from dataclasses import dataclass, field

from testkit.waldur_emulator import errors, filters
from testkit.waldur_emulator.pagination import paginate


@dataclass
class Request:
    method: str
    path: str          # below the API root, e.g. "marketplace-orders/"
    query: dict        # name -> list of values
    body: object       # parsed JSON or None
    store: object
    list_url: str = "" # absolute URL of this path (for Link headers)

    @property
    def profile(self):
        return self.store.profile


@dataclass
class Response:
    status: int = 200
    body: object = None
    headers: dict = field(default_factory=dict)


@dataclass
class Route:
    method: str
    pattern: re.Pattern
    handler: object
    enabled: object


ROUTES = []


def route(method, template, enabled=None):
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    def register(handler):
        ROUTES.append(Route(method, re.compile(f"^{regex}$"), handler, enabled))
        return handler
    return register


def dispatch(request: Request) -> Response:
    method = "GET" if request.method == "HEAD" else request.method
    path_matched = False
    for entry in ROUTES:
        match = entry.pattern.match(request.path)
        if not match or (entry.enabled and not entry.enabled(request.profile)):
            continue
        path_matched = True
        if entry.method == method:
            return entry.handler(request, **match.groupdict())
    if path_matched:
        raise errors.method_not_allowed(request.method)
    raise errors.not_found_route()


def ordered(records, query):
    """Newest first, or by DRF's ``o=field,-other`` (unknown fields are ignored)."""
    records = sorted(records, key=lambda r: -r["seq"])
    keys = [k.strip() for value in query.get("o", []) for k in value.split(",") if k.strip()]
    for key in reversed(keys):
        name = key.lstrip("-")
        if records and name in records[0] and name != "seq":
            records.sort(key=lambda r: (r[name] is not None, r[name]), reverse=key.startswith("-"))
    return records


def list_response(request: Request, records, render) -> Response:
    """Order, paginate, render and trim fields."""
    records = ordered(records, request.query)
    page, headers = paginate(records, request.query, request.list_url)
    body = [filters.select_fields(render(request.store, r), request.query) for r in page]
    return Response(200, body, headers)


def detail_response(request: Request, record, render, status=200) -> Response:
    return Response(status, filters.select_fields(render(request.store, record), request.query))


def body_dict(request: Request) -> dict:
    if request.body is None:
        return {}
    if not isinstance(request.body, dict):
        raise errors.bad_request({"non_field_errors": ["Invalid data. Expected a dictionary."]})
    return request.body


def required_field(request: Request, name: str, kind, allow_empty=True):
    """The body's ``name`` if it is a ``kind`` (non-empty unless allowed), else a DRF-style 400."""
    value = body_dict(request).get(name)
    if not isinstance(value, kind) or (not allow_empty and not value):
        raise errors.bad_request({name: ["This field is required."]})
    return value
