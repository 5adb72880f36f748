"""Query-string parsing for list calls: limit, offset, marker, sort, filters."""

from __future__ import annotations

import ast
import datetime as dt
from collections.abc import Iterable
from typing import Any

from cinderblock import exceptions as exc
from cinderblock.api.framework import ApiRequest
from cinderblock.api.validation import DB_MAX_INT, to_bool
from cinderblock.db.query import ListParams
from cinderblock.services import policy

PAGING_KEYS = {"limit", "offset", "marker", "sort", "sort_key", "sort_dir", "with_count"}
_TIME_OPS = ("gt", "gte", "lt", "lte", "eq", "neq")


def parse_limit(req: ApiRequest) -> int:
    raw = req.query.get("limit")
    max_limit = req.deps.settings.osapi_max_limit
    if raw is None:
        return max_limit
    try:
        limit = int(raw)
    except ValueError as err:
        raise exc.Invalid("limit param must be an integer") from err
    if limit < 0:
        raise exc.Invalid("limit param must be positive")
    return min(limit, max_limit)


def parse_offset(req: ApiRequest) -> int:
    raw = req.query.get("offset")
    if raw is None:
        return 0
    try:
        offset = int(raw)
    except ValueError as err:
        raise exc.Invalid("offset param must be an integer") from err
    if offset < 0 or offset > 2147483647:
        raise exc.Invalid("offset param must be positive")
    return offset


def parse_sort(
    req: ApiRequest, default_key: str = "created_at", default_dir: str = "desc"
) -> tuple[list[str], list[str]]:
    query = req.query
    sort = query.get("sort")
    if sort is not None and ("sort_key" in query or "sort_dir" in query):
        raise exc.InvalidInput(
            reason="The 'sort_key' and 'sort_dir' parameters are deprecated and cannot be used "
            "with the 'sort' parameter."
        )
    keys: list[str] = []
    dirs: list[str] = []
    if sort is not None:
        for item in sort.split(","):
            key, _, direction = item.strip().partition(":")
            if not key:
                raise exc.InvalidInput(reason="Invalid sort key")
            keys.append(key.strip())
            dirs.append(direction.strip().lower() or default_dir)
    else:
        if "sort_key" in query:
            keys = [k.strip() for k in query["sort_key"].split(",")]
        if "sort_dir" in query:
            dirs = [d.strip().lower() for d in query["sort_dir"].split(",")]
        if dirs and not keys:
            keys = [default_key]
    for direction in dirs:
        if direction not in ("asc", "desc"):
            raise exc.InvalidInput(reason="Unknown sort direction, must be 'desc' or 'asc'.")
    if not keys:
        keys, dirs = [default_key], [default_dir]
    return keys, dirs


def parse_time_filter(key: str, raw: str) -> list[tuple[str, str, dt.datetime]]:
    out = []
    for part in raw.split(","):
        op, sep, when = part.partition(":")
        if not sep or op not in _TIME_OPS:
            raise exc.InvalidInput(reason=f"Invalid filter: {key}={raw}")
        try:
            parsed = dt.datetime.fromisoformat(when.strip().replace("Z", "+00:00"))
        except ValueError as err:
            raise exc.InvalidInput(reason=f"Invalid filter: {key}={raw}") from err
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
        out.append((key, op, parsed))
    return out


def parse_metadata_filter(raw: str) -> dict[str, str]:
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError) as err:
        raise exc.InvalidInput(reason=f"Invalid metadata filter: {raw}") from err
    if not isinstance(value, dict):
        raise exc.InvalidInput(reason=f"Invalid metadata filter: {raw}")
    return {str(k): str(v) for k, v in value.items()}


def build_list_params(
    req: ApiRequest,
    *,
    user_filters: Iterable[str],
    admin_filters: Iterable[str],
    bool_filters: Iterable[str] = (),
    int_filters: Iterable[str] = (),
    version_gated: dict[str, str] | None = None,
    like_filters: Iterable[str] = (),
    time_filters: Iterable[str] = (),
) -> tuple[ListParams, bool]:
    """Parse paging, sorting and filters; returns (params, all_tenants)."""
    query = req.query
    keys, dirs = parse_sort(req)
    params = ListParams(
        marker=query.get("marker"),
        limit=parse_limit(req),
        offset=parse_offset(req),
        sort_keys=keys,
        sort_dirs=dirs,
        with_count=req.at_least("3.45")
        and to_bool_or_400("with_count", query.get("with_count", "false")),
    )
    all_tenants = False
    allowed = set(user_filters)
    if req.ctx.is_admin:
        allowed |= set(admin_filters)
    gated = version_gated or {}
    invalid = []
    for key, value in query.multi_items():
        if key in PAGING_KEYS:
            continue
        if key == "all_tenants":
            # Admins only (the data layer's rule), and only if the policy lets them.
            all_tenants = (
                req.ctx.is_admin
                and to_bool_or_400(key, value)
                and policy.allowed(req.ctx, "volume:get_all_tenants")
            )
            continue
        base = key[:-1] if key.endswith("~") else key
        if base in gated and not req.at_least(gated[base]):
            continue
        if base not in allowed and not (req.ctx.is_admin and base == "project_id"):
            if req.at_least("3.31"):
                invalid.append(key)
            continue
        if key.endswith("~"):
            if not req.at_least("3.34") or base not in set(like_filters):
                # Not a known filter: a 400 from 3.31, silently dropped before (as above).
                if req.at_least("3.31"):
                    invalid.append(key)
                continue
            params.like_filters[base] = value
        elif key == "metadata":
            params.metadata.update(parse_metadata_filter(value))
        elif key in set(time_filters):
            params.time_filters.extend(parse_time_filter(key, value))
        elif key == "bootable" and not req.at_least("3.2"):
            # Before 3.2 anything but a false-like value meant true.
            params.filters[key] = value.strip().lower() not in ("false", "0", "no", "off", "n", "f")
        elif key in set(bool_filters):
            params.filters[key] = to_bool_or_400(key, value)
        elif key in set(int_filters):
            try:
                number = int(value)
            except ValueError as err:
                raise exc.InvalidInput(reason=f"{key}={value}") from err
            if not 0 <= number <= DB_MAX_INT:  # beyond the column: no match, not a DB error
                raise exc.InvalidInput(reason=f"{key}={value}")
            params.filters[key] = number
        else:
            params.filters[key] = value
    if invalid:
        raise exc.Invalid(f"Invalid filters {', '.join(invalid)} are found in query options.")
    return params, all_tenants


def to_bool_or_400(key: str, value: Any) -> bool:
    try:
        return to_bool(value)
    except exc.InvalidInput as err:
        raise exc.InvalidInput(reason=f"{key}={value}") from err
