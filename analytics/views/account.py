"""Dashboard pages: account (filled in by its feature)."""

urlpatterns: list = []
