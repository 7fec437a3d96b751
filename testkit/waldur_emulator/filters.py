"""Query-string filters, answered like django-filter does (400 for a bad choice).

``query`` is always a dict of name -> list of strings (``parse_qs`` shape).
"""
from testkit.waldur_emulator import errors
from testkit.waldur_emulator.formats import normalize_uuid, parse_moment


def first(query, name, default=None):
    values = query.get(name) or []
    return values[0] if values else default


def choices(query, name, allowed):
    """The set of values given for a repeatable choice filter, or None if absent."""
    values = [v for v in query.get(name, []) if v != ""]
    if not values:
        return None
    for value in values:
        if value not in allowed:
            raise errors.bad_request({name: [
                f"Select a valid choice. {value} is not one of the available choices."]})
    return set(values)


def uuid_value(query, name):
    """A uuid filter: None if absent; a non-uuid value answers 400 like Waldur's UUIDFilter."""
    value = first(query, name)
    if value in (None, ""):
        return None
    normalized = normalize_uuid(value)
    if not normalized:
        raise errors.bad_request({name: ["Enter a valid UUID."]})
    return normalized


def boolean(query, name):
    value = first(query, name)
    if value in (None, ""):
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise errors.bad_request({name: ["Enter a valid boolean."]})


def moment(query, name):
    value = first(query, name)
    if value in (None, ""):
        return None
    parsed = parse_moment(value)
    if parsed is None:
        raise errors.bad_request({name: ["Enter a valid date/time."]})
    return parsed


class Filter:
    """Accumulates predicates over records; ``apply`` keeps the records passing all."""

    def __init__(self):
        self.predicates = []

    def equal(self, value, get):
        if value is not None:
            self.predicates.append(lambda r: get(r) == value)
        return self

    def within(self, values, get):
        if values is not None:
            self.predicates.append(lambda r: get(r) in values)
        return self

    def at_least(self, value, get):
        if value is not None:
            self.predicates.append(lambda r: get(r) >= value)
        return self

    def below(self, value, get):
        if value is not None:
            self.predicates.append(lambda r: get(r) < value)
        return self

    def at_most(self, value, get):
        if value is not None:
            self.predicates.append(lambda r: get(r) <= value)
        return self

    def apply(self, records):
        return [r for r in records if all(p(r) for p in self.predicates)]


def select_fields(data, query):
    """``field=a&field=b`` keeps only those keys (of a dict or of each dict in a list)."""
    fields = [f for f in query.get("field", []) if f]
    if not fields:
        return data
    if isinstance(data, list):
        return [select_fields(item, query) for item in data]
    return {k: v for k, v in data.items() if k in fields}
