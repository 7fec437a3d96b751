"""Waldur's list paging: ``page``/``page_size`` (default 10, at most 300), the total in
``X-Result-Count`` and a ``Link`` header listing first, prev, next, last in that order.

python-waldur-client 0.6.4 reads the Link header by position (2nd entry on the first
page, 3rd entry later), so the order and the omission of absent links matter.
"""
from urllib.parse import urlencode

from testkit.waldur_emulator import errors

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 300


def _positive_int(text, default):
    try:
        value = int(text)
    except (TypeError, ValueError):
        return default
    return value if value > 0 else default


def page_size_of(query) -> int:
    size = _positive_int((query.get("page_size") or [None])[0], DEFAULT_PAGE_SIZE)
    return min(size, MAX_PAGE_SIZE)


def _page_url(base_url, query, page):
    pairs = [(k, v) for k, values in query.items() if k != "page" for v in values]
    pairs.append(("page", str(page)))
    return f"{base_url}?{urlencode(pairs)}"


def paginate(items: list, query: dict, base_url: str):
    """Return (items of the requested page, headers). ``base_url`` is the absolute URL
    of the list without its query; ``query`` maps names to lists of values."""
    size = page_size_of(query)
    pages = max(1, -(-len(items) // size))
    raw_page = (query.get("page") or ["1"])[0]
    page = pages if raw_page == "last" else _positive_int(raw_page, 0)
    if page < 1 or page > pages:
        raise errors.ApiError(404, {"detail": "Invalid page."})
    links = [(_page_url(base_url, query, 1), "first")]
    if page > 1:
        links.append((_page_url(base_url, query, page - 1), "prev"))
    if page < pages:
        links.append((_page_url(base_url, query, page + 1), "next"))
    links.append((_page_url(base_url, query, pages), "last"))
    headers = {
        "X-Result-Count": str(len(items)),
        "Link": ", ".join(f'<{url}>; rel="{rel}"' for url, rel in links),
    }
    return items[(page - 1) * size: page * size], headers
