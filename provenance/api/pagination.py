"""Pagination: a keyset cursor for the large lists, limit/offset for the small ones.

A cursor page costs the same at row 10 and at row 10 million (no OFFSET): the next page starts strictly after the
last row's sort key, so rows added or removed meanwhile never shift a page. The sort key always ends with the
primary key, which makes it unique (no row is skipped or shown twice on ties), and NULLs sort last in both
directions on every database. Answers are ``{"next", "previous", "results"}`` without a count: counting a large
filtered list is the one thing a keyset page avoids.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured, ValidationError
from django.db.models import F, Model, Q, QuerySet
from django.db.models.expressions import OrderBy
from rest_framework import exceptions, pagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

MAX_CURSOR_CHARS = 2000


class KeysetPagination(pagination.BasePagination):
    """``?cursor=`` (opaque, from ``next``/``previous``) and ``?limit=`` (1 to ``max_page_size``).

    The order is the queryset's (after ``?ordering=``), else ``default_ordering``; plain local fields only.
    """

    page_size = 100
    max_page_size = 500
    cursor_query_param = "cursor"
    page_size_query_param = "limit"
    default_ordering: Sequence[str] = ("-pk",)

    def __init__(self, default_ordering: Sequence[str] | None = None) -> None:
        if default_ordering is not None:
            self.default_ordering = default_ordering

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: Any = None) -> list[Model]:
        self.request = request
        self.limit = self._limit(request)
        self.keys = self._keys(queryset)
        cursor = self._decode(request.query_params.get(self.cursor_query_param))
        self.is_reverse = bool(cursor and cursor["r"])
        rows = queryset.order_by(*self._order_by(reverse=self.is_reverse))
        if cursor is not None:
            rows = rows.filter(self._beyond(cursor["v"], reverse=self.is_reverse))
        page = list(rows[: self.limit + 1])
        has_more = len(page) > self.limit
        page = page[: self.limit]
        if self.is_reverse:
            page.reverse()
        self.has_next = has_more if not self.is_reverse else True
        self.has_previous = has_more if self.is_reverse else cursor is not None
        self.page = page
        return page

    def get_paginated_response(self, data: list[Any]) -> Response:
        return Response({"next": self.get_next_link(), "previous": self.get_previous_link(), "results": data})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {"name": self.cursor_query_param, "required": False, "in": "query",
             "description": "The cursor of a page, from `next` or `previous`.", "schema": {"type": "string"}},
            {"name": self.page_size_query_param, "required": False, "in": "query",
             "description": f"Results per page (at most {self.max_page_size}).",
             "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size}},
        ]

    def get_next_link(self) -> str | None:
        if not self.has_next:
            return None
        if not self.page:  # reversed past the start: the first page
            return self._link(None)
        return self._link(self._position(self.page[-1]), reverse=False)

    def get_previous_link(self) -> str | None:
        if not self.has_previous:
            return None
        if not self.page:
            return None
        return self._link(self._position(self.page[0]), reverse=True)

    # -- the sort key ----------------------------------------------------------------------------------------

    def _keys(self, queryset: QuerySet) -> list[tuple[str, bool, Any]]:
        """``(field name, descending, model field)`` for the sort key, ending with the primary key."""
        ordering = [o for o in queryset.query.order_by if isinstance(o, str)] or list(self.default_ordering)
        model = queryset.model
        keys: list[tuple[str, bool, Any]] = []
        for item in ordering:
            descending = item.startswith("-")
            name = item.lstrip("-")
            if name == "pk":
                name = model._meta.pk.name
            try:
                field = model._meta.get_field(name)
            except FieldDoesNotExist as err:
                raise ImproperlyConfigured(f"keyset ordering on {name!r}: not a field of {model.__name__}") from err
            if field.is_relation or not field.concrete:
                raise ImproperlyConfigured(f"keyset ordering on {name!r}: only plain fields")
            if all(k[0] != name for k in keys):
                keys.append((name, descending, field))
        pk = model._meta.pk
        if all(k[0] != pk.name for k in keys):
            keys.append((pk.name, keys[0][1] if keys else True, pk))
        return keys

    def _order_by(self, *, reverse: bool) -> list[OrderBy]:
        expressions = []
        for name, descending, field in self.keys:
            # Forward, NULLs come last whatever the direction; reversed, everything flips. Said only for nullable
            # fields: an explicit NULLS clause on a NOT NULL column would keep PostgreSQL from using its index.
            nulls = ({"nulls_first": True} if reverse else {"nulls_last": True}) if field.null else {}
            column = F(name)
            expressions.append(column.desc(**nulls) if descending != reverse else column.asc(**nulls))
        return expressions

    def _beyond(self, values: list[Any], *, reverse: bool) -> Q:
        """Rows strictly after ``values`` in the forward order (before them when ``reverse``)."""
        beyond = Q(pk__in=[])
        equal = Q()
        for (name, descending, field), value in zip(self.keys, values, strict=True):
            later = "lt" if descending != reverse else "gt"
            if value is None:
                # NULL is last going forward: nothing non-null comes after it; going back, everything non-null does.
                step = Q(**{f"{name}__isnull": False}) if reverse else Q(pk__in=[])
                same = Q(**{f"{name}__isnull": True})
            else:
                step = Q(**{f"{name}__{later}": value})
                if field.null and not reverse:
                    step |= Q(**{f"{name}__isnull": True})
                same = Q(**{name: value})
            beyond |= equal & step
            equal &= same
        return beyond

    # -- cursors ---------------------------------------------------------------------------------------------

    def _position(self, row: Model) -> list[Any]:
        return [None if getattr(row, field.attname) is None else field.value_to_string(row)
                for _, _, field in self.keys]

    def _signature(self) -> str:
        return ",".join(("-" if d else "") + n for n, d, _ in self.keys)

    def _link(self, values: list[Any] | None, *, reverse: bool = False) -> str:
        url = self.request.build_absolute_uri()
        if values is None:
            return remove_query_param(url, self.cursor_query_param)
        text = json.dumps({"o": self._signature(), "v": values, "r": reverse}, separators=(",", ":"))
        token = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        return replace_query_param(url, self.cursor_query_param, token)

    def _decode(self, token: str | None) -> dict[str, Any] | None:
        if not token:
            return None
        try:
            if len(token) > MAX_CURSOR_CHARS:
                raise ValueError("too long")
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            if not isinstance(data, dict) or data.get("o") != self._signature():
                raise ValueError("not a cursor of this list and order")
            values = data.get("v")
            if not isinstance(values, list) or len(values) != len(self.keys):
                raise ValueError("wrong shape")
            converted = [None if v is None else field.to_python(_text(v))
                         for (_, _, field), v in zip(self.keys, values, strict=True)]
            return {"v": converted, "r": bool(data.get("r"))}
        except (ValueError, TypeError, UnicodeDecodeError, binascii.Error, ValidationError) as err:
            raise exceptions.ParseError("invalid cursor: use the next and previous links as given",
                                        code="invalid_cursor") from err

    def _limit(self, request: Request) -> int:
        try:
            limit = int(request.query_params.get(self.page_size_query_param, ""))
        except ValueError:
            return self.page_size
        return min(max(limit, 1), self.max_page_size)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("cursor values are strings")
    return value


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """The small lists (sources, policies, trust roots, keys, tokens): ``?limit=`` and ``?offset=``, with a count."""

    default_limit = 100
    max_limit = 500
