"""Enumerate the tenant API from the URL configuration.

Used by the role-matrix documentation command and by the isolation tests, so that a route
added later is documented and tested without editing a hand-kept list.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

from tenants.roles import Role

from .base import OrgScopedViewSet

ORG_PREFIX = "api/v1/orgs/<slug:org>/"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class OrgRoute:
    template: str  # e.g. "api/v1/orgs/<slug:org>/participants/<uuid>/"
    name: str
    view_class: type
    actions: dict[str, str]  # HTTP method -> viewset action

    @property
    def is_detail(self) -> bool:
        return "<" in self.template[len(ORG_PREFIX):] or getattr(self.view_class, "singleton", False)

    def path(self, org_slug: str, object_id: str | None = None) -> str:
        path = "/" + self.template.replace("<slug:org>", org_slug)
        if "<" in path:
            head, _, rest = path.partition("<")
            _, _, tail = rest.partition(">")
            path = head + str(object_id) + tail
        return path


def _pattern_text(pattern) -> str:
    text = str(pattern.pattern)
    # Router patterns are regexes: turn "^participants/(?P<uuid>[...])/$" into "participants/<uuid>/".
    import re

    text = text.lstrip("^").rstrip("$")
    text = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<\1>", text)
    text = text.replace("\\.", ".")
    return text


def _walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + _pattern_text(pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + _pattern_text(pattern), pattern


def org_routes() -> list[OrgRoute]:
    """Every route under /api/v1/orgs/<org>/ (format-suffix variants excluded)."""
    routes = []
    for template, pattern in _walk(get_resolver().url_patterns):
        if not template.startswith(ORG_PREFIX) or "<format>" in template:
            continue
        callback = pattern.callback
        view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        # DRF adds "head" to a viewset's (shared) action map once it has served a request;
        # HEAD mirrors GET, so only the five methods below are walked.
        actions = {
            method: action
            for method, action in (getattr(callback, "actions", None) or {}).items()
            if method in HTTP_METHODS
        }
        if not actions and view_class is not None:
            actions = {m: m for m in HTTP_METHODS if hasattr(view_class, m)}
        routes.append(OrgRoute(template, pattern.name or "", view_class, actions))
    return routes


def role_matrix_markdown() -> str:
    roles = list(Role)
    lines = [
        "| route | method | " + " | ".join(role.value for role in roles) + " | notes |",
        "|---|---|" + "---|" * len(roles) + "---|",
    ]
    for route in org_routes():
        view = route.view_class
        if not issubclass(view, OrgScopedViewSet):
            raise TypeError(f"{route.template} is not an OrgScopedViewSet: tenant routes must be.")
        notes = getattr(view, "role_matrix_notes", {})
        for method, action in route.actions.items():
            allowed = view.role_matrix.get(action, frozenset())
            cells = " | ".join("yes" if role in allowed else "-" for role in roles)
            path = "/" + route.template.replace("<slug:org>", "{org}").replace("<uuid>", "{id}")
            lines.append(f"| `{path}` | {method.upper()} | {cells} | {notes.get(action, '')} |")
    return "\n".join(lines) + "\n"
