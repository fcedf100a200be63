"""Review of the SQL guard's --leave-out-ownership (app/backups/sqlguard.py)."""

from __future__ import annotations

import io

import pytest

from app.backups import sqlguard
from app.backups.catalog import Catalog
from app.backups.sqlguard import guard
from tests.backups.test_restore_roles import _not_the_owner, _plain_backup, _role
from tests.deployments.test_runbooks import log_text, run

# pg_dump's own line for default privileges of a few kinds on tables: 18 top-level words
MANY_WORDS = (
    b"ALTER DEFAULT PRIVILEGES FOR ROLE shop_owner IN SCHEMA public GRANT SELECT,INSERT,UPDATE,DELETE ON TABLES "
    b"TO shop_app;\n"
)


def test_review_default_privileges_for_role_of_many_words_are_left_out_too():
    """Only the first four words say it is one: its length must not keep it in (psql would fail the fill)."""
    out = io.BytesIO()
    assert guard(io.BytesIO(MANY_WORDS), out, leave_out_ownership=True) is None
    assert out.getvalue() == sqlguard.LEFT_OUT


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_review_a_plain_backup_with_default_privileges_of_several_kinds_passes_its_restore_test(
    app, runner, data_target, pg_server
):
    _, owner, _ = _not_the_owner(app, data_target)
    app_role, _ = _role(data_target, "shop_app")
    data_target.execute(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE "
        f"ON TABLES TO {app_role}"
    )
    name = _plain_backup(data_target, pg_server)

    job, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    assert job.state == "succeeded", (job.result, log_text(view))
    assert Catalog(data_target.backup_dir).get(name).restore_tested["ok"] is True
