"""Command-line value parsers shared by the verbs (each raises ValueError with what to write)."""
from __future__ import annotations

from collections.abc import Iterable

import yaml


def parse_key_values(items: Iterable[str] | None, option: str) -> dict:
    """``KEY=VALUE`` items -> {key: YAML-typed value} (``3`` -> int, ``true`` -> bool, ...).

    Raises:
        ValueError: an item without "=" (the message names ``option``).
    """
    out = {}
    for item in items or []:
        if '=' not in item:
            raise ValueError(f'{option} expects KEY=VALUE, got {item!r}')
        key, value = item.split('=', 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def parse_size(text: str, option: str, multiple: int = 1) -> tuple[int, int]:
    """``WxH`` (e.g. "640x192") -> (H, W).

    Raises:
        ValueError: not two positive integers, or not multiples of ``multiple``.
    """
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise ValueError(f'{option} expects WxH, e.g. 640x192, got {text!r}') from None
    if w <= 0 or h <= 0 or w % multiple or h % multiple:
        raise ValueError(f'{option} {text}: width and height must be positive multiples of {multiple}')
    return h, w
