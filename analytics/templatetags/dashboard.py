"""Template tags of the dashboard: the top bar (links by role, organization switcher)."""

from django import template

from analytics.views.navigation import nav_links, places_for

register = template.Library()


@register.inclusion_tag("analytics/_topbar.html", takes_context=True)
def dashboard_topbar(context):
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"user": None}
    places = places_for(user)
    organization = getattr(request, "organization", None)
    current = next((p for p in places if organization is not None and p.slug == organization.slug), None)
    links = []
    if current is not None:
        links = nav_links(current.slug, current.role, own_page=current.landing if current.role == "member" else None,
                          is_staff=user.is_staff)
    path = request.path
    # The longest matching link is the current one (Overview's "/o/x/" prefixes every page).
    active = max((url for _, _, url in links if url and path.startswith(url)), key=len, default=None)
    return {
        "user": user,
        "current": current,
        "others": [p for p in places if current is None or p.slug != current.slug],
        "links": [{"key": k, "label": label, "url": url, "active": url == active} for k, label, url in links],
        "csrf_token": context.get("csrf_token"),
    }
