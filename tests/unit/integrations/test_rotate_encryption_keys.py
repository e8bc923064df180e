"""``python manage.py rotate_encryption_keys``: re-encrypt credentials with the newest key."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection as db_connection

from integrations.models import Connection

from ...factories import ConnectionFactory

pytestmark = pytest.mark.django_db

OLD, NEW, FOREIGN = (Fernet.generate_key().decode() for _ in range(3))


def _stored(connection) -> str:
    """The ciphertext as the database holds it."""
    with db_connection.cursor() as cursor:
        cursor.execute(f"SELECT credentials FROM {Connection._meta.db_table} WHERE id = %s", [connection.pk])
        return cursor.fetchone()[0]


def _rotate(**options) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("rotate_encryption_keys", stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def _decrypts_with(key: str, token: str) -> bool:
    try:
        Fernet(key.encode()).decrypt(token.encode())
        return True
    except InvalidToken:
        return False


@pytest.fixture
def old_rows(settings):
    """Five connections whose credentials were encrypted under the old key alone."""
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    return [ConnectionFactory(credentials={"api_key": f"secret-key-{i}"}) for i in range(5)]


class RotateEncryptionKeysTests:
    def test_it_re_encrypts_every_row_with_the_new_key_in_batches(self, settings, old_rows):
        before = {c.pk: _stored(c) for c in old_rows}
        assert all(_decrypts_with(OLD, token) for token in before.values())

        settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]  # step 1: the new key first, deployed
        assert Connection.objects.get(pk=old_rows[0].pk).credentials == {"api_key": "secret-key-0"}
        out, err = _rotate(batch_size=2)

        assert "integrations.Connection.credentials: 5 row(s), 5 re-encrypted, 0 already current" in out
        for row in old_rows:
            token = _stored(row)
            assert token != before[row.pk]
            assert _decrypts_with(NEW, token) and not _decrypts_with(OLD, token)
        # Counts and ids only: no value and no ciphertext is printed.
        for row in old_rows:
            assert row.credentials["api_key"] not in out + err
            assert before[row.pk] not in out + err and _stored(row) not in out + err

        settings.FIELD_ENCRYPTION_KEYS = [NEW]  # step 3: the old key removed
        assert [c.credentials for c in Connection.objects.order_by("pk")] == [
            {"api_key": f"secret-key-{i}"} for i in range(5)
        ]

    def test_running_it_again_changes_nothing(self, settings, old_rows):
        settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
        _rotate()
        after_first = {c.pk: _stored(c) for c in old_rows}
        out, _ = _rotate()
        assert "5 row(s), 0 re-encrypted, 5 already current" in out
        assert {c.pk: _stored(c) for c in old_rows} == after_first

    def test_a_setting_with_only_the_old_key_cannot_read_rotated_rows(self, settings, old_rows):
        settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
        _rotate()
        settings.FIELD_ENCRYPTION_KEYS = [OLD]
        with pytest.raises(ImproperlyConfigured) as error:
            Connection.objects.get(pk=old_rows[0].pk)
        assert "rotate_encryption_keys" in str(error.value) and "secret" not in str(error.value)
        settings.FIELD_ENCRYPTION_KEYS = [NEW]
        assert Connection.objects.get(pk=old_rows[0].pk).credentials == {"api_key": "secret-key-0"}

    def test_without_rotation_removing_the_old_key_makes_rows_unreadable(self, settings, old_rows):
        settings.FIELD_ENCRYPTION_KEYS = [NEW]
        with pytest.raises(ImproperlyConfigured):
            Connection.objects.get(pk=old_rows[0].pk)

    def test_dry_run_counts_and_writes_nothing(self, settings, old_rows):
        before = {c.pk: _stored(c) for c in old_rows}
        settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
        out, _ = _rotate(dry_run=True)
        assert "5 re-encrypted (dry run)" in out
        assert {c.pk: _stored(c) for c in old_rows} == before

    def test_rows_no_key_decrypts_are_reported_left_alone_and_fail_the_command(self, settings, old_rows):
        settings.FIELD_ENCRYPTION_KEYS = [FOREIGN]
        stranger = ConnectionFactory(credentials={"api_key": "foreign-secret"})
        foreign_token = _stored(stranger)
        settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
        out, err = StringIO(), StringIO()
        with pytest.raises(CommandError, match="1 row"):
            call_command("rotate_encryption_keys", stdout=out, stderr=err)
        assert _stored(stranger) == foreign_token
        assert f"row(s) {stranger.pk}" in err.getvalue()
        assert "foreign-secret" not in out.getvalue() + err.getvalue()
        assert foreign_token not in out.getvalue() + err.getvalue()
        # The readable rows were still rotated.
        assert all(_decrypts_with(NEW, _stored(c)) for c in old_rows)

    def test_a_credential_saved_meanwhile_is_not_overwritten(self, settings, old_rows, monkeypatch):
        settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
        from integrations.management.commands import rotate_encryption_keys as command

        real_fernet = command.fernet
        target = old_rows[0]

        def fernet_then_admin_saves():
            # Between the read and the write of the batch, an admin stores new credentials.
            Connection.objects.filter(pk=target.pk).update(credentials={"api_key": "changed-meanwhile"})
            return real_fernet()

        monkeypatch.setattr(command, "fernet", fernet_then_admin_saves)
        out, _ = _rotate(batch_size=1)
        assert "changed meanwhile" in out and "1 changed meanwhile" in out
        assert Connection.objects.get(pk=target.pk).credentials == {"api_key": "changed-meanwhile"}
