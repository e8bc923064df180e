"""Dashboard pages: emails (filled in by its feature)."""

urlpatterns: list = []
