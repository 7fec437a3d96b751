"""The current Waldur API as waldur-api-client 8.x (generated from Waldur's OpenAPI schema) describes it.

- :func:`operations`: every (HTTP verb, path template) the client has, read from the ``_get_kwargs``
  of each generated module under ``waldur_api_client/api/`` (text only: importing 3,000 modules is slow).
- :func:`template`: a request path as such a template (uuids -> ``{uuid}``).
- :func:`parse`: an answer parsed by that operation's own ``_parse_response`` (the generated
  ``Model.from_dict`` calls, and the status codes the schema documents).
- :func:`unknown_fields`: what the parsed models did not recognise (``additional_properties``), recursively.
"""
from __future__ import annotations

import functools
import importlib
import json
import pathlib
import re
import traceback
import typing
from typing import Any, Dict, List, Optional, Tuple

import attrs
import httpx
import waldur_api_client
from waldur_api_client.client import Client

API_ROOT = pathlib.Path(waldur_api_client.__file__).parent / "api"
_MODELS = API_ROOT.parent / "models"
_METHOD = re.compile(r'"method":\s*"(\w+)"')
_URL = re.compile(r'"url":\s*f?"/api/([^"]*)"')
_PARAM = re.compile(r"\{\w+\}")
_UUID = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")

Operation = Tuple[str, str]  # ("POST", "marketplace-orders/{uuid}/approve_by_provider/")


@functools.lru_cache(maxsize=None)
def operations() -> Dict[Operation, str]:
    """(verb, template) -> dotted module name, for every operation of the client."""
    found: Dict[Operation, str] = {}
    for path in sorted(API_ROOT.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        text = path.read_text()
        method, url = _METHOD.search(text), _URL.search(text)
        if method and url:
            module = ".".join(("waldur_api_client",) + path.relative_to(API_ROOT.parent).with_suffix("").parts)
            found.setdefault((method.group(1).upper(), _PARAM.sub("{uuid}", url.group(1))), module)
    return found


def template(path: str) -> str:
    """``/api/marketplace-orders/<hex>/approve_by_provider/`` -> ``marketplace-orders/{uuid}/approve_by_provider/``."""
    path = path.split("?", 1)[0]
    if path.startswith("/api/"):
        path = path[len("/api/"):]
    return "/".join("{uuid}" if _UUID.match(part) else part for part in path.split("/"))


def parse(operation: Operation, status: int, body: Any) -> Any:
    """The answer as the client parses it; raises on a missing required field or an undocumented status."""
    module = importlib.import_module(operations()[operation])
    content = b"" if body is None else json.dumps(body).encode()
    response = httpx.Response(status, content=content, headers={"Content-Type": "application/json"},
                              request=httpx.Request(operation[0], f"http://waldur.test/api/{operation[1]}"))
    return module._parse_response(client=Client(base_url="http://waldur.test"), response=response)


def _is_model(value: Any) -> bool:
    return attrs.has(type(value)) and hasattr(value, "additional_properties")


def _free_form(model: Any) -> bool:
    """A schema ``object`` with no declared properties (limits, attributes…): all its keys are extra."""
    return all(f.name == "additional_properties" for f in attrs.fields(type(model)))


def _model_names(field: attrs.Attribute) -> List[str]:
    """The generated model classes a field may hold, from its annotation (``Union["IssueReference", None,
    Unset]``), unless the annotation also allows a plain dict."""
    names, todo = [], [field.type]
    while todo:
        hint = todo.pop()
        if hint is dict or typing.get_origin(hint) is dict:
            return []
        if isinstance(hint, typing.ForwardRef):
            names.append(hint.__forward_arg__)
        elif isinstance(hint, str):
            names.append(hint)
        elif isinstance(hint, type) and hasattr(hint, "from_dict"):
            names.append(hint.__name__)
        todo.extend(typing.get_args(hint))
    return names


def unknown_fields(value: Any, where: str = "") -> List[str]:
    """Paths (``[0].components[1].factor``) of every field no model declares, and of every dict left
    unparsed where the schema has a model (the generated ``oneOf`` parsers swallow a failing ``from_dict``)."""
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in unknown_fields(item, f"{where}[{i}]")]
    if not _is_model(value) or _free_form(value):
        return []
    found = [f"{where}.{key}".lstrip(".") for key in value.additional_properties]
    for field in attrs.fields(type(value)):
        if field.name == "additional_properties":
            continue
        item, at = getattr(value, field.name), f"{where}.{field.name}"
        if isinstance(item, dict) and _model_names(field):
            found.append(f"{at.lstrip('.')} (not parsed as {'/'.join(_model_names(field))})")
        found.extend(unknown_fields(item, at))
    return found


def check_answer(operation: Operation, status: int, body: Any) -> Optional[str]:
    """None when the client's models take the answer whole, else what is wrong."""
    try:
        parsed = parse(operation, status, body)
    except Exception as error:  # KeyError for a missing required field, UnexpectedStatus, ValueError…
        in_models = [f for f in traceback.extract_tb(error.__traceback__) if f"{_MODELS}" in f.filename]
        at = f" at {in_models[-1].name}: {in_models[-1].line}" if in_models else ""
        return f"does not parse: {type(error).__name__}: {str(error).splitlines()[0]}{at}"
    extra = unknown_fields(parsed)
    return f"fields the schema lacks: {', '.join(extra)}" if extra else None
