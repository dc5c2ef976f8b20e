"""WHAT to search: named search spaces, each a function returning a flat dict."""

from spaces.registry import (
    SEARCHED,
    SPACES,
    get_space,
    searched_keys,
    validate_space,
    value_range,
)

__all__ = ["SEARCHED", "SPACES", "get_space", "searched_keys", "validate_space", "value_range"]
