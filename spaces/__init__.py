"""WHAT to search: named search spaces, each a function returning a flat dict."""

from spaces.registry import (
    SEARCHED,
    SPACES,
    Space,
    get_space,
    searched_keys,
    space_backbone,
    validate_space,
    value_range,
)

__all__ = [
    "SEARCHED",
    "SPACES",
    "Space",
    "get_space",
    "searched_keys",
    "space_backbone",
    "validate_space",
    "value_range",
]
