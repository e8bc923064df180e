"""python manage.py rotate_encryption_keys [--batch-size N] [--dry-run]

Re-encrypts every encrypted field (integrations.crypto.EncryptedJSONField, on any model)
with the first, newest key of FIELD_ENCRYPTION_KEYS, so the older keys can be removed.

Procedure: put the new key first in FIELD_ENCRYPTION_KEYS (the old ones after it), deploy
every process (web, workers, beat), run this command, and only then drop the old key.

- Batches of ``--batch-size`` rows, one transaction each; a row is written back only if its
  ciphertext is still the one read (a credential changed meanwhile is already under the
  newest key), so it is safe while the platform runs.
- Idempotent: a row the newest key already decrypts is left alone; running it twice
  re-encrypts nothing the second time.
- Prints counts per field and row ids only, never a value or a ciphertext. A row that no
  configured key decrypts is left as it is and makes the command fail (exit status 1).
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections, router, transaction
from django.db.models import TextField
from django.db.models.functions import Cast

from integrations.crypto import EncryptedJSONField, fernet


def encrypted_fields() -> list[tuple[type, EncryptedJSONField]]:
    """(model, field) of every concrete encrypted field of every installed model."""
    return [
        (model, field)
        for model in apps.get_models()
        if not model._meta.proxy and model._meta.managed
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedJSONField)
    ]


class Command(BaseCommand):
    help = "Re-encrypt every encrypted field with the newest key of FIELD_ENCRYPTION_KEYS."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")
        parser.add_argument("--dry-run", action="store_true", help="count what would change, write nothing")

    def handle(self, *args, batch_size: int, dry_run: bool, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        keys = settings.FIELD_ENCRYPTION_KEYS
        newest = Fernet(keys[0].encode())
        self.stdout.write(f"{len(keys)} key(s) configured; re-encrypting with the first.")
        unreadable_total = 0
        for model, field in encrypted_fields():
            counts, unreadable = self._rotate_field(model, field, newest, batch_size, dry_run)
            unreadable_total += len(unreadable)
            label = f"{model._meta.label}.{field.name}"
            self.stdout.write(
                f"{label}: {counts['rows']} row(s), {counts['rotated']} re-encrypted"
                f"{' (dry run)' if dry_run else ''}, {counts['current']} already current, "
                f"{counts['changed']} changed meanwhile, {len(unreadable)} unreadable"
            )
            if unreadable:
                shown = ", ".join(str(pk) for pk in unreadable[:20])
                self.stderr.write(f"{label}: no configured key decrypts row(s) {shown}")
        if unreadable_total:
            raise CommandError(
                f"{unreadable_total} row(s) could not be decrypted with FIELD_ENCRYPTION_KEYS; "
                "they were left unchanged. Do not remove any key until this is resolved."
            )

    def _rotate_field(self, model, field, newest: Fernet, batch_size: int, dry_run: bool):
        counts = {"rows": 0, "rotated": 0, "current": 0, "changed": 0}
        unreadable: list = []
        db = router.db_for_write(model)
        table, column = model._meta.db_table, field.column
        pk_column = model._meta.pk.column
        # Cast to a plain text field: the ciphertext as stored, not decrypted by the field.
        rows = model._base_manager.using(db).exclude(**{f"{field.attname}__isnull": True})
        rows = rows.annotate(_token=Cast(field.attname, TextField())).order_by("pk")
        last_pk = None
        while True:
            page = rows if last_pk is None else rows.filter(pk__gt=last_pk)
            batch = list(page.values_list("pk", "_token")[:batch_size])
            if not batch:
                break
            last_pk = batch[-1][0]
            counts["rows"] += len(batch)
            updates = []
            for pk, token in batch:
                try:
                    newest.decrypt(token.encode())
                    counts["current"] += 1
                    continue
                except InvalidToken:
                    pass
                try:
                    updates.append((fernet().rotate(token.encode()).decode(), pk, token))
                except InvalidToken:
                    unreadable.append(pk)
            if dry_run:
                counts["rotated"] += len(updates)
                continue
            with transaction.atomic(using=db), connections[db].cursor() as cursor:
                quote = connections[db].ops.quote_name
                sql = (
                    f"UPDATE {quote(table)} SET {quote(column)} = %s "
                    f"WHERE {quote(pk_column)} = %s AND {quote(column)} = %s"
                )
                for new_token, pk, old_token in updates:
                    # Conditional on the ciphertext read: a value saved meanwhile is left alone.
                    cursor.execute(sql, [new_token, pk, old_token])
                    counts["rotated" if cursor.rowcount == 1 else "changed"] += 1
        return counts, unreadable
