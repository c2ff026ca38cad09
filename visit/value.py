"""The decorator of the visit's plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value(cls: type[T]) -> type[T]:
    """A frozen dataclass: an action, event, policy or identity the core hands out is
    compared by its fields (as tests read them) and cannot be changed by its receiver."""
    return dataclass(frozen=True)(cls)
