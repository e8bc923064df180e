"""One module per upstream (httpx client + pydantic payload models + one pure mapping
function into ``base.CanonicalSession``); no Django import anywhere in this package.

- ``base``: CanonicalSession, QuarantinedRecord, Page, ScoringPoll, content_hash, helpers
- ``errors``: the UpstreamError family and Retry-After parsing
- ``transport``: client factory, status mapping, SSRF guard
- ``asleep``, ``beddit``, ``usleep``, ``grand_challenge``: the providers
"""
