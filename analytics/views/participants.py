"""Dashboard pages: participants (filled in by its feature)."""

urlpatterns: list = []
