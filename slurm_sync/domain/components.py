"""The offering's components (config-components.yaml) and Waldur <-> SLURM unit conversion.

Format (the seed's, plus ``unit_factor``)::

    cpu:                      # key = SLURM TRES type; "gres/gpu" for a GRES
      limit: 10               # default limit in Waldur units (used for usage components)
      measured_unit: k-Hours
      accounting_type: usage  # usage | limit
      label: CPU
      unit_factor: 60000      # SLURM TRES-minutes per Waldur unit (default 1); mem counts MB

The Waldur component type is the key without its ``gres/`` prefix. All arithmetic is Decimal.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import yaml

ACCOUNTING_TYPES = ("usage", "limit")
_TRES_KEY = re.compile(r"^(gres/)?[a-z][a-z0-9_]{0,31}$")


class ComponentsConfigError(ValueError):
    """config-components.yaml is unreadable or an entry is malformed."""


@dataclass(frozen=True)
class Component:
    tres: str  # SLURM TRES name: cpu, mem, gres/gpu
    measured_unit: str
    accounting_type: str
    label: str
    limit: Optional[Decimal] = None
    unit_factor: Decimal = Decimal(1)
    max_limit: Optional[Decimal] = None  # Waldur units: an order above it errs (or waits for a person)

    @property
    def type(self) -> str:
        """The Waldur component type."""
        return self.tres[len("gres/"):] if self.tres.startswith("gres/") else self.tres

    def to_slurm_minutes(self, amount: Any) -> int:
        """Waldur units -> SLURM TRES-minutes, rounded down so a read-back never exceeds the order."""
        return int((_decimal(amount) * self.unit_factor).to_integral_value(rounding=ROUND_DOWN))

    def to_waldur_units(self, tres_minutes: Any) -> Decimal:
        """SLURM TRES-minutes (mem in MB) -> Waldur units, unrounded."""
        return _decimal(tres_minutes) / self.unit_factor


@dataclass(frozen=True)
class Components:
    """The configured components, by TRES name, in file order."""

    items: Tuple[Component, ...]

    def __iter__(self):
        return iter(self.items)

    def by_type(self) -> Dict[str, Component]:
        return {c.type: c for c in self.items}

    def by_tres(self) -> Dict[str, Component]:
        return {c.tres: c for c in self.items}

    def waldur_limits(self, grp_tres_mins: Mapping[str, Any]) -> Dict[str, int]:
        """What SLURM enforces, as Waldur limits of the ``limit`` components: whole Waldur units, rounded
        down, so a read-back can never show more than the cluster allows (Waldur limits are integers)."""
        limits: Dict[str, int] = {}
        for component in self.items:
            if component.accounting_type == "limit" and component.tres in grp_tres_mins:
                units = component.to_waldur_units(grp_tres_mins[component.tres])
                limits[component.type] = int(units.to_integral_value(rounding=ROUND_DOWN))
        return limits


def whole_limits(limits: Mapping[str, Any]) -> Dict[str, int]:
    """Waldur limits as the non-negative integers Waldur keeps; anything else is left out."""
    whole: Dict[str, int] = {}
    for key, value in (limits or {}).items():
        try:
            number = float(value)
            integer = int(number)
        except (TypeError, ValueError, OverflowError):
            continue
        if number >= 0 and number == integer:
            whole[str(key)] = integer
    return whole


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise InvalidOperation(value)
    result = Decimal(str(value).strip())
    if not result.is_finite():
        raise InvalidOperation(value)
    return result


def _parse_entry(path: str, key: Any, raw: Any) -> Component:
    def fail(problem: str) -> ComponentsConfigError:
        return ComponentsConfigError(f"{path}: component {key!r}: {problem}")

    if not isinstance(key, str) or not _TRES_KEY.match(key):
        raise fail("the key must be a SLURM TRES type such as cpu, mem or gres/gpu")
    if not isinstance(raw, Mapping):
        raise fail(f"expected a mapping of settings, got {type(raw).__name__}")
    unknown = set(raw) - {"limit", "measured_unit", "accounting_type", "label", "unit_factor", "max_limit"}
    if unknown:
        raise fail(f"unknown setting(s) {', '.join(sorted(map(str, unknown)))}")
    accounting_type = raw.get("accounting_type")
    if accounting_type not in ACCOUNTING_TYPES:
        raise fail(f"accounting_type must be one of {', '.join(ACCOUNTING_TYPES)}, got {accounting_type!r}")
    for text_field in ("measured_unit", "label"):
        if not isinstance(raw.get(text_field, ""), str):
            raise fail(f"{text_field} must be a string")
    limit, max_limit = (_non_negative(raw, name, fail) for name in ("limit", "max_limit"))
    try:
        unit_factor = _decimal(raw.get("unit_factor", 1))
    except (InvalidOperation, ValueError):
        raise fail(f"unit_factor must be a number, got {raw.get('unit_factor')!r}") from None
    if unit_factor <= 0:
        raise fail(f"unit_factor must be positive, got {raw.get('unit_factor')!r}")
    return Component(
        tres=key,
        measured_unit=raw.get("measured_unit", "") or "",
        accounting_type=accounting_type,
        label=raw.get("label") or key,
        limit=limit,
        unit_factor=unit_factor,
        max_limit=max_limit,
    )


def _non_negative(raw: Mapping[str, Any], name: str, fail) -> Optional[Decimal]:
    if raw.get(name) is None:
        return None
    try:
        value = _decimal(raw[name])
    except (InvalidOperation, ValueError):
        raise fail(f"{name} must be a number, got {raw[name]!r}") from None
    if value < 0:
        raise fail(f"{name} must not be negative, got {raw[name]!r}")
    return value


def parse_components(data: Any, path: str = "<components>") -> Components:
    if not isinstance(data, Mapping) or not data:
        raise ComponentsConfigError(f"{path}: expected a non-empty mapping of TRES type -> settings")
    items = tuple(_parse_entry(path, key, raw) for key, raw in data.items())
    types = [c.type for c in items]
    duplicated = sorted({t for t in types if types.count(t) > 1})
    if duplicated:
        raise ComponentsConfigError(f"{path}: component type(s) {', '.join(duplicated)} defined twice")
    return Components(items)


def load_components(path: "str | Path") -> Components:
    path = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as error:
        raise ComponentsConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise ComponentsConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_components(data, path)
