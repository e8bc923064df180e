"""Dashboard pages: overview (filled in by its feature)."""

urlpatterns: list = []
