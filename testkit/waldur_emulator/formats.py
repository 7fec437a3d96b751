"""Value formats shared by the emulator: uuids, slugs, timestamps, decimals.

Waldur renders datetimes in UTC with a trailing ``Z``, dates as ``YYYY-MM-DD``,
decimals as strings (Django REST framework's default) and uuids as 32 hex chars.
"""
import re
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation


def new_uuid() -> str:
    return uuid.uuid4().hex


def normalize_uuid(value) -> str:
    """Return the 32-hex form of a uuid given with or without dashes ('' if invalid)."""
    try:
        return uuid.UUID(str(value)).hex
    except (ValueError, AttributeError, TypeError):
        return ""


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")
    return slug or "item"


def unique_slug(name: str, taken) -> str:
    """Slug from ``name``, suffixed ``-2``, ``-3``… until it is not in ``taken``."""
    base = slugify(name)
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    return slug


def as_utc(moment: datetime) -> datetime:
    """Treat naive datetimes (e.g. from an overridden clock) as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def iso(moment) -> str:
    if moment is None:
        return None
    if isinstance(moment, datetime):
        return as_utc(moment).isoformat().replace("+00:00", "Z")
    return moment.isoformat()


def parse_moment(text: str):
    """Parse an ISO date or datetime from a query or body; None if unparsable."""
    if not text:
        return None
    text = str(text).strip().replace("Z", "+00:00")
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        pass
    try:
        d = date.fromisoformat(text[:10])
    except ValueError:
        return None
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


def month_start(moment: datetime) -> date:
    return date(moment.year, moment.month, 1)


def parse_decimal(value):
    """Decimal from a JSON number or string, None if it is not a finite number."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        return None
    return number if number.is_finite() else None


def decimal_places(number: Decimal) -> int:
    exponent = number.normalize().as_tuple().exponent
    return max(0, -exponent)


def render_decimal(number: Decimal) -> str:
    """Render like a DRF DecimalField with 2 decimal places: ``"12.30"``."""
    return str(number.quantize(Decimal("0.01")))
