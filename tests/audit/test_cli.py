"""`flask rewind audit head|verify`, in-process and as the real command."""

import errno
import json
import os
import sqlite3
import stat
import subprocess
import sys

from app.audit import store
from app.audit.store import Actor
from app.auth.roles import Role
from app.extensions import db
from app.statuses import ExitStatus, Outcome
from tests.support.apps import build_app, migrate


def run(app, *args):
    return app.test_cli_runner().invoke(args=["rewind", "audit", *args])


def fill(app, n):
    with app.app_context():
        for i in range(n):
            store.record("test.event", details={"i": i})
        db.session.commit()


def test_head_then_verify_against_it(app):
    empty = run(app, "head")
    assert empty.exit_code == 1 and empty.stdout == ""  # empty log: nothing to anchor yet
    assert empty.stderr == "rewind: the audit log is empty: there is no row to anchor yet\n"
    fill(app, 4)
    head = run(app, "head").output.strip()
    assert head.startswith("4:") and len(head) == 2 + 64
    result = run(app, "verify", "--head", head)
    assert result.exit_code == 0 and "intact: 4 rows" in result.output


def test_verify_names_the_cut_tail(app):
    fill(app, 4)
    head = run(app, "head").output.strip()
    with app.app_context():
        db.session.execute(db.text("DELETE FROM audit_event WHERE id = 4"))
        db.session.commit()
    result = run(app, "verify", "--head", head)
    assert result.exit_code == 1 and "the tail was cut" in result.output


def test_malformed_head_is_a_usage_error(app):
    result = run(app, "verify", "--head", "12:nothex")
    assert result.exit_code == 2 and "ID:HASH" in result.output


def test_real_command_on_a_fresh_database_then_after_a_hand_edit(tmp_path):
    """What the issue promises, with the real `flask` executable: 0 when fresh, non-zero after tampering."""
    instance = tmp_path / "instance"
    database = tmp_path / "ops.db"
    migrate(build_app(instance, f"sqlite:///{database}"))
    env = {
        **os.environ,
        "FLASK_APP": "wsgi",
        "REWIND_INSTANCE_DIR": str(instance),
        "REWIND_DATABASE_URL": f"sqlite:///{database}",
    }
    flask = [sys.executable, "-m", "flask"]
    fresh = subprocess.run([*flask, "rewind", "audit", "verify"], env=env, capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr
    assert "intact: 0 rows" in fresh.stdout
    created = subprocess.run([*flask, "rewind", "init-admin"], env=env, capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE audit_event SET actor_name = 'someone-else' WHERE id = 1")
    broken = subprocess.run([*flask, "rewind", "audit", "verify"], env=env, capture_output=True, text=True)
    assert broken.returncode == 1
    assert "row 1 was changed" in broken.stderr


def test_export_writes_what_the_page_s_export_links_give_for_the_same_filters(app, users, as_role, tmp_path):
    """The page's CSV and JSON-lines downloads had no command beside them: a shell on the server could not take the
    incident's rows for a report without a browser session."""
    from tests.audit.test_views import seed

    seed(app, 1205)
    with app.app_context():  # a stranger's name and a detail over two lines, as CSV and JSON must carry them
        store.record("auth.login", actor=Actor(None, "José 日本"), details={"note": "two\nlines"})
        db.session.commit()
    page = as_role(Role.VIEWER)
    for form in ("csv", "jsonl"):
        downloaded = page.get(f"/audit/export.{form}?outcome=ok").get_data(as_text=True)
        out = tmp_path / f"rows.{form}"
        written = run(app, "export", "--format", form, "--outcome", "ok", "-o", str(out))
        assert written.exit_code == 0 and written.output == "", written.output
        assert out.read_bytes().decode() == downloaded  # byte for byte
        assert stat.S_IMODE(out.stat().st_mode) == 0o600  # audit rows hold addresses: the owner's alone
        assert run(app, "export", "--format", form, "--outcome", "ok").stdout_bytes.decode() == downloaded
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert len(rows) > 1000 and {r["outcome"] for r in rows} == {"ok"}  # more than one batch of the keyset walk
    assert len((tmp_path / "rows.csv").read_bytes()) > 64_000  # more than one chunk of the CSV
    [stranger] = [r for r in rows if r["actor_name"] == "José 日本"]
    assert stranger["details"] == {"note": "two\nlines"}
    assert not list(tmp_path.glob("*.part"))


def test_export_to_a_terminal_that_is_not_utf8_writes_utf8_bytes_whole(tmp_path):
    """Review: printed as text in the terminal's encoding, a name such as "José 日本" stopped the export half-way
    with a traceback; what a redirect keeps must be the download's bytes."""
    instance, database = tmp_path / "instance", tmp_path / "ops.db"
    app = build_app(instance, f"sqlite:///{database}")
    migrate(app)
    with app.app_context():
        store.record("auth.login", actor=Actor(None, "José 日本"))
        db.session.commit()
    env = {
        **os.environ,
        "FLASK_APP": "wsgi",
        "REWIND_INSTANCE_DIR": str(instance),
        "REWIND_DATABASE_URL": f"sqlite:///{database}",
        "PYTHONIOENCODING": "latin-1",
    }
    done = subprocess.run([sys.executable, "-m", "flask", "rewind", "audit", "export"], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    [row] = [json.loads(line) for line in done.stdout.decode("utf-8").splitlines()]
    assert row["actor_name"] == "José 日本"


def test_export_with_a_filter_it_cannot_read_says_which_option_and_writes_nothing(app, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    out = folder / "rows.csv"
    result = run(app, "export", "--from", "garbage", "--outcome", "maybe", "-o", str(out))
    assert result.exit_code == ExitStatus.REFUSED and result.stdout == ""
    assert result.stderr == (  # the options as typed, not the page's field names (since)
        f"rewind: bad filter: --outcome: 'maybe' is not an outcome; choose one of {', '.join(Outcome)} · "
        "--from: 'garbage' is not a time; use 2026-11-26 14:05 or an ISO 8601 time\n"
    )
    swapped = run(app, "export", "--from", "2030-01-02 00:00", "--until", "2030-01-01 00:00", "-o", str(out))
    assert swapped.stderr == (
        "rewind: bad filter: --until: 2030-01-01 00:00 is not after --from (2030-01-02 00:00); swap them\n"
    )
    assert not list(folder.iterdir())


def test_export_to_a_file_it_cannot_write_is_one_line_and_leaves_nothing_behind(app, tmp_path, monkeypatch):
    """Review: a missing folder was a traceback, and FILE.part was opened over whatever was there."""
    from app.audit import cli, export

    nowhere = run(app, "export", "-o", str(tmp_path / "missing" / "rows.jsonl"))
    assert nowhere.exit_code == ExitStatus.ERROR and "Traceback" not in nowhere.output
    assert nowhere.stderr == f"rewind: cannot write {tmp_path}/missing/rows.jsonl.part: No such file or directory\n"
    out = tmp_path / "rows.jsonl"
    (tmp_path / "rows.jsonl.part").write_text("someone's own notes\n")
    taken = run(app, "export", "-o", str(out))
    assert taken.exit_code == ExitStatus.REFUSED and "rows.jsonl.part exists" in taken.stderr
    assert (tmp_path / "rows.jsonl.part").read_text() == "someone's own notes\n" and not out.exists()
    (tmp_path / "rows.jsonl.part").unlink()

    def full_disk(filters, form):
        yield "{}\n"
        raise OSError(errno.ENOSPC, "No space left on device")

    out.write_text("the export of yesterday\n")
    monkeypatch.setattr(export, "chunks", full_disk)
    cut = run(app, "export", "-o", str(out))
    assert cut.exit_code == ExitStatus.ERROR
    assert cut.stderr == f"rewind: writing {out} failed, nothing was kept: No space left on device\n"
    assert out.read_text() == "the export of yesterday\n" and not (tmp_path / "rows.jsonl.part").exists()

    def unsyncable(folder):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.undo()
    monkeypatch.setattr(cli, "sync_dir", unsyncable)  # review: said "nothing was kept" of a file in place
    written = run(app, "export", "-o", str(out))
    assert written.exit_code == 0 and out.read_text() != "the export of yesterday\n"
    assert written.stderr == f"rewind: {out} is written; its folder could not be synced: Invalid argument\n"
