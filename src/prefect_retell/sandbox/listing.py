"""Filtering and paging for the list endpoints.

Filters follow list-calls' operand shapes: string `{type: "string", op: eq|ne|sw|ew|co,
value}`, number, range, enum `{type: "enum", op: "in", value: [...]}`, boolean and
presence `{type: "present", op: pr|np}`. Filter keys the sandbox does not know are
refused with 400 rather than ignored, so that a rehearsal never believes it filtered
when it did not. Cursors are the id of the last item of the previous page; clients
must treat them as opaque.

A `call_id` filter, as a string `eq` or an enum `in`, also narrows the calls the
sandbox renders at all (`named_call_ids`): a poller that asks for a thousand of ten
thousand live calls every second must not make the sandbox render all ten thousand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

Predicate = Callable[[Any], bool]

FILTERABLE_STATUSES = ("not_connected", "ongoing", "ended", "error")
MAX_PAGE_LIMIT = 1000

_STRING_OPS = {
    "eq": lambda have, want: have == want,
    "ne": lambda have, want: have != want,
    "sw": lambda have, want: have.startswith(want),
    "ew": lambda have, want: have.endswith(want),
    "co": lambda have, want: want in have,
}
_NUMBER_OPS = {
    "eq": lambda have, want: have == want,
    "ne": lambda have, want: have != want,
    "gt": lambda have, want: have > want,
    "ge": lambda have, want: have >= want,
    "lt": lambda have, want: have < want,
    "le": lambda have, want: have <= want,
}
_ANY_TYPE = ("string", "number", "range", "enum", "boolean", "present")


@dataclass(frozen=True)
class PageRequest:
    """Paging options of a list request.

    Attributes:
        limit: Page size.
        pagination_key: Cursor from the previous page, or None for the first.
        skip: Items to skip before the page (list-calls only).
        descending: Newest first.
    """

    limit: int = 50
    pagination_key: str | None = None
    skip: int = 0
    descending: bool = True


@dataclass(frozen=True)
class Page:
    """One page of a list answer."""

    items: list[dict[str, Any]]
    has_more: bool
    pagination_key: str | None


def parse_page_request(source: Mapping[str, Any]) -> PageRequest:
    """Read and check limit, pagination_key, skip and sort_order.

    Args:
        source: A JSON body or query parameters (numbers may arrive as text).

    Raises:
        ApiError: 400 if a value is malformed or out of range.
    """
    limit = _integer(source.get("limit", 50), "limit")
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise bad_request(f"limit must be between 1 and {MAX_PAGE_LIMIT}.")
    skip = _integer(source.get("skip", 0), "skip")
    if skip < 0:
        raise bad_request("skip must be zero or more.")
    key = source.get("pagination_key")
    if key is not None and not isinstance(key, str):
        raise bad_request("pagination_key must be a string.")
    if key and skip:
        raise bad_request("Use either pagination_key or skip, not both.")

    order = source.get("sort_order", "descending")
    if order not in ("ascending", "descending"):
        raise bad_request("sort_order must be 'ascending' or 'descending'.")
    return PageRequest(limit, key or None, skip, order == "descending")


def paginate(
    items: Sequence[dict[str, Any]],
    request: PageRequest,
    id_field: str,
    keep: Callable[[dict[str, Any]], bool] | None = None,
) -> Page:
    """Cut one page out of sorted items, keeping those that match.

    The cursor is looked up among all items, not only the matching ones, so a
    call that stops matching between two pages (it ended, say) does not break
    the walk.

    Args:
        items: All items in answer order.
        request: The paging options.
        id_field: The field whose value serves as the cursor.
        keep: Which items belong in the answer; all of them if None.

    Raises:
        ApiError: 400 if the cursor names no item.
    """
    start = 0
    if request.pagination_key is not None:
        ids = [item[id_field] for item in items]
        if request.pagination_key not in ids:
            raise bad_request("pagination_key does not match any item; start over.")
        start = ids.index(request.pagination_key) + 1

    rest = [item for item in items[start:] if keep is None or keep(item)]
    rest = rest[request.skip :]
    page = rest[: request.limit]
    has_more = len(rest) > request.limit
    cursor = page[-1][id_field] if has_more else None
    return Page(page, has_more, cursor)


def call_filter(criteria: Any) -> Callable[[dict[str, Any]], bool]:
    """Compile list-calls `filter_criteria` into a test on call objects.

    Args:
        criteria: The `filter_criteria` body field (None for no filter).

    Returns:
        A function telling whether a call object matches every criterion.

    Raises:
        ApiError: 400 naming the first malformed or unsupported criterion.
    """
    if criteria is None:
        return lambda _call: True
    if not isinstance(criteria, dict):
        raise bad_request("filter_criteria must be an object.")

    tests = [_criterion(key, spec) for key, spec in criteria.items()]
    return lambda call: all(test(call) for test in tests)


def named_call_ids(criteria: Any) -> frozenset[str] | None:
    """The call ids a well-formed `call_id` eq or enum `in` filter names, else None.

    Only a shortcut: the compiled filter still tests every call it is given, so a
    malformed criterion is refused by `call_filter` as usual.

    Args:
        criteria: The `filter_criteria` body field.
    """
    spec = criteria.get("call_id") if isinstance(criteria, dict) else None
    if not isinstance(spec, dict):
        return None
    value = spec.get("value")
    if spec.get("type") == "string" and spec.get("op") == "eq":
        return frozenset([value]) if isinstance(value, str) else None
    if spec.get("type") != "enum" or spec.get("op") != "in":
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    return None


def _criterion(key: str, spec: Any) -> Callable[[dict[str, Any]], bool]:
    where = f"filter_criteria.{key}"
    if key in _KEYED_FIELDS:
        return _keyed(_KEYED_FIELDS[key], spec, where)
    if key == "agent":
        return _agent_filter(spec, where)
    if key == "call_status":
        return _status_filter(spec, where)
    if key not in _SCALAR_FIELDS:
        raise bad_request(f"{where} is not supported by the sandbox.")

    getter, types = _SCALAR_FIELDS[key]
    test = _operand(spec, where, types)
    return lambda call: test(getter(call))


def _status_filter(spec: Any, where: str) -> Callable[[dict[str, Any]], bool]:
    test = _operand(spec, where, ("enum",))
    for status in spec["value"]:
        if status not in FILTERABLE_STATUSES:
            allowed = ", ".join(FILTERABLE_STATUSES)
            raise bad_request(
                f"{where} cannot filter on '{status}'; allowed values: {allowed}."
            )
    return lambda call: test(call["call_status"])


def _agent_filter(spec: Any, where: str) -> Callable[[dict[str, Any]], bool]:
    if not isinstance(spec, list):
        raise bad_request(f"{where} must be a list of {{agent_id, version?}}.")
    wanted: list[tuple[str, set[float] | None]] = []
    for entry in spec:
        if not isinstance(entry, dict) or not isinstance(entry.get("agent_id"), str):
            raise bad_request(f"{where} entries need a string agent_id.")
        wanted.append((entry["agent_id"], _versions(entry.get("version"), where)))

    def matches(call: dict[str, Any]) -> bool:
        return any(
            call["agent_id"] == agent_id
            and (versions is None or call["agent_version"] in versions)
            for agent_id, versions in wanted
        )

    return matches


def _versions(value: Any, where: str) -> set[float] | None:
    if value is None or value == []:
        return None
    values = value if isinstance(value, list) else [value]
    if not all(_is_number(item) for item in values):
        raise bad_request(f"{where} version must be a number or a list of numbers.")
    return set(values)


def _keyed(
    getter: Callable[[dict[str, Any]], Any], spec: Any, where: str
) -> Callable[[dict[str, Any]], bool]:
    if not isinstance(spec, list):
        raise bad_request(f"{where} must be a list of filters, each with a key.")
    tests: list[tuple[str, Predicate]] = []
    for index, item in enumerate(spec):
        item_where = f"{where}[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise bad_request(f"{item_where} needs a string key.")
        tests.append((item["key"], _operand(item, item_where, _ANY_TYPE)))

    def matches(call: dict[str, Any]) -> bool:
        mapping = getter(call)
        mapping = mapping if isinstance(mapping, dict) else {}
        return all(test(mapping.get(key)) for key, test in tests)

    return matches


def _operand(spec: Any, where: str, types: Sequence[str]) -> Predicate:
    if not isinstance(spec, dict):
        raise bad_request(f"{where} must be an object with type, op and value.")
    kind = spec.get("type")
    if kind not in types:
        raise bad_request(f"{where}.type must be one of: {', '.join(types)}.")
    return _OPERAND_BUILDERS[kind](spec, where)


def _string_operand(spec: dict[str, Any], where: str) -> Predicate:
    compare = _op(spec, where, _STRING_OPS)
    want = spec.get("value")
    if not isinstance(want, str):
        raise bad_request(f"{where}.value must be a string.")
    if spec["op"] == "ne":
        return lambda have: have != want
    return lambda have: isinstance(have, str) and compare(have, want)


def _number_operand(spec: dict[str, Any], where: str) -> Predicate:
    compare = _op(spec, where, _NUMBER_OPS)
    want = spec.get("value")
    if not _is_number(want):
        raise bad_request(f"{where}.value must be a number.")
    return lambda have: _is_number(have) and compare(have, want)


def _range_operand(spec: dict[str, Any], where: str) -> Predicate:
    _op(spec, where, {"bt": None})
    bounds = spec.get("value")
    if not (isinstance(bounds, list) and len(bounds) == 2):
        raise bad_request(f"{where}.value must be [lower, upper].")
    if not all(_is_number(bound) for bound in bounds):
        raise bad_request(f"{where}.value must hold two numbers.")
    low, high = bounds
    return lambda have: _is_number(have) and low <= have <= high


def _enum_operand(spec: dict[str, Any], where: str) -> Predicate:
    _op(spec, where, {"in": None})
    values = spec.get("value")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise bad_request(f"{where}.value must be a list of strings.")
    wanted = set(values)
    return lambda have: isinstance(have, str) and have in wanted


def _boolean_operand(spec: dict[str, Any], where: str) -> Predicate:
    _op(spec, where, {"eq": None})
    want = spec.get("value")
    if not isinstance(want, bool):
        raise bad_request(f"{where}.value must be true or false.")
    return lambda have: have is want


def _present_operand(spec: dict[str, Any], where: str) -> Predicate:
    _op(spec, where, {"pr": None, "np": None})
    if spec["op"] == "pr":
        return lambda have: have is not None
    return lambda have: have is None


_OPERAND_BUILDERS: dict[str, Callable[[dict[str, Any], str], Predicate]] = {
    "string": _string_operand,
    "number": _number_operand,
    "range": _range_operand,
    "enum": _enum_operand,
    "boolean": _boolean_operand,
    "present": _present_operand,
}


def _op(spec: dict[str, Any], where: str, ops: Mapping[str, Any]) -> Any:
    op = spec.get("op")
    if op not in ops:
        raise bad_request(f"{where}.op must be one of: {', '.join(ops)}.")
    return ops[op]


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise bad_request(f"{name} must be an integer.")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise bad_request(f"{name} must be an integer.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _analysis(field: str) -> Callable[[dict[str, Any]], Any]:
    return lambda call: (call.get("call_analysis") or {}).get(field)


def _cost(call: dict[str, Any]) -> Any:
    return (call.get("call_cost") or {}).get("combined_cost")


_STRING_OR_ENUM = ("string", "enum")
_NUMERIC = ("number", "range")
_SCALAR_FIELDS: dict[str, tuple[Callable[[dict[str, Any]], Any], tuple[str, ...]]] = {
    "call_id": (lambda call: call["call_id"], _STRING_OR_ENUM),
    "from_number": (lambda call: call["from_number"], ("string",)),
    "to_number": (lambda call: call["to_number"], ("string",)),
    "batch_call_id": (lambda call: call.get("batch_call_id"), ("string",)),
    "agent_tag": (lambda call: call.get("agent_tag"), ("enum",)),
    "call_type": (lambda call: call["call_type"], ("enum",)),
    "direction": (lambda call: call["direction"], ("enum",)),
    "disconnection_reason": (lambda call: call["disconnection_reason"], ("enum",)),
    "data_storage_setting": (lambda call: call["data_storage_setting"], ("enum",)),
    "user_sentiment": (_analysis("user_sentiment"), ("enum",)),
    "call_successful": (_analysis("call_successful"), ("boolean",)),
    "in_voicemail": (_analysis("in_voicemail"), ("boolean",)),
    "start_timestamp": (lambda call: call["start_timestamp"], _NUMERIC),
    "end_timestamp": (lambda call: call["end_timestamp"], _NUMERIC),
    "duration_ms": (lambda call: call["duration_ms"], _NUMERIC),
    "combined_cost": (_cost, _NUMERIC),
}
_KEYED_FIELDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "metadata": lambda call: call.get("metadata"),
    "dynamic_variables": lambda call: call.get("retell_llm_dynamic_variables"),
    "custom_analysis_data": _analysis("custom_analysis_data"),
}
