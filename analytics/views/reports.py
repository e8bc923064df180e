"""Dashboard pages: reports (filled in by its feature)."""

urlpatterns: list = []
