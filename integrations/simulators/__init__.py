"""Local simulators of the upstream sleep APIs (shared/upstreams.md), serving synthetic nights.

Pure Python, no Django. Modules:
- ``nights``: the deterministic night generator and the provider encodings;
- ``edf``: a tiny EDF writer and header reader;
- ``harness``: knobs, fault injection, request log, barriers, ``/_sim/...`` control routes;
- ``store``: upstream users and their nights, the ``updated`` clock, ``/_sim/users...``;
- ``asleep``, ``beddit``, ``usleep``, ``grand_challenge``: one ``create_app(...)`` each;
- ``server``: run them with uvicorn (``run``, ``serve_all``, ``start_in_thread``,
  ``start_in_subprocess``).
"""

PROVIDERS = ("asleep", "beddit", "usleep", "grand_challenge")
