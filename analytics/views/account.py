"""Account pages: sign in, sign out, and ``/`` (the landing page of each role).

``/`` sends a person in one organization straight to their page (owner/admin: overview,
HR: reports, member: their own nights) and shows a picker to someone in several.
The Django admin keeps its own login at /admin/login/.
"""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import path

from .navigation import places_for


class LoginView(auth_views.LoginView):
    template_name = "analytics/account/login.html"
    redirect_authenticated_user = True


@login_required
def home(request):
    places = places_for(request.user)
    reachable = [p for p in places if p.landing]
    if len(places) == 1 and reachable:
        return redirect(reachable[0].landing)
    return render(request, "analytics/account/home.html", {"places": places})


urlpatterns = [
    path("", home, name="home"),
    path("login/", LoginView.as_view(), name="login"),
    # POST only (Django's LogoutView): a link or a prefetch cannot sign anyone out.
    path("logout/", auth_views.LogoutView.as_view(next_page="/login/"), name="logout"),
]
