"""Server-rendered dashboard pages (Django templates; charts drawn by the vendored Chart.js).

Every organization page goes through ``access.org_page``: the organization comes from the
URL slug joined with the caller's Membership, exactly as in the API (tenants/api/base.py).
"""
