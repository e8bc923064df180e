"""Storage of report export files: the ``exports`` alias of settings.STORAGES.

A callable so the FileField resolves the backend at run time (filesystem by default,
S3-compatible when EXPORT_STORAGE_BACKEND=s3) and migrations do not freeze a backend.
"""

from django.core.files.storage import storages


def exports_storage():
    return storages["exports"]
