"""record() and verify() on real ops databases, and every kind of tampering."""

import hashlib

import pytest
from sqlalchemy import text

from app.audit import chain, store
from app.audit.models import AuditEvent
from app.extensions import db
from app.statuses import Outcome
from tests.conftest import both_databases
from tests.support.threads import all_at_once


def fill(app, n: int) -> None:
    with app.app_context():
        for i in range(n):
            store.record("test.event", details={"i": i}, target="staging")
        db.session.commit()


def run_verify(app, saved=None) -> chain.Verdict:
    with app.app_context():
        return store.verify(saved)


def sql(app, statement: str, **params) -> None:
    with app.app_context():
        db.session.execute(text(statement), params)
        db.session.commit()


@both_databases
def test_fresh_chain_is_intact_and_contiguous(app):
    fill(app, 5)
    verdict = run_verify(app)
    assert verdict.intact and verdict.checked == 5
    with app.app_context():
        ids = [e.id for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]
        assert ids == [1, 2, 3, 4, 5]
        assert store.head() == verdict.head


@both_databases
def test_update_is_detected_at_that_row(app):
    fill(app, 6)
    sql(app, "UPDATE audit_event SET outcome = 'failed' WHERE id = 4")
    problem = run_verify(app).problem
    assert (problem.row_id, problem.kind) == (4, "changed")


@both_databases
def test_delete_is_detected_at_that_row(app):
    fill(app, 6)
    sql(app, "DELETE FROM audit_event WHERE id = 3")
    problem = run_verify(app).problem
    assert (problem.row_id, problem.kind) == (3, "removed")
    assert "row 3 removed" in problem.message


@both_databases
def test_inserted_row_is_detected(app):
    """Shift rows 4.. up by one and slip a forged row 4 in, linked to row 3 but hashed without the key."""
    fill(app, 6)
    with app.app_context():
        for row_id in range(6, 3, -1):
            db.session.execute(text("UPDATE audit_event SET id = id + 1 WHERE id = :i"), {"i": row_id})
        prev = db.session.execute(text("SELECT hash FROM audit_event WHERE id = 3")).scalar()
        forged = (4, "2026-11-25T12:00:00.000000Z", None, "mallory", "user.create", None, "{}", "ok", None, None, prev)
        digest = hashlib.sha256(chain.encode(forged)).hexdigest()
        db.session.execute(
            text(
                "INSERT INTO audit_event (id, ts, actor_name, action, details, outcome, prev_hash, hash) "
                "VALUES (4, :ts, 'mallory', 'user.create', '{}', 'ok', :prev, :hash)"
            ),
            {"ts": "2026-11-25 12:00:00", "prev": prev, "hash": digest},
        )
        db.session.commit()
    problem = run_verify(app).problem
    assert (problem.row_id, problem.kind) == (4, "changed")


@both_databases
def test_chain_rebuilt_without_the_key_is_detected(app):
    """Someone with database access rewrites row 2 and recomputes every hash after it with a key of their own."""
    fill(app, 5)
    with app.app_context():
        db.session.execute(text("UPDATE audit_event SET actor_name = 'nobody' WHERE id = 2"))
        rows = db.session.execute(select_all()).all()
        prev = rows[0][-1]
        for row in rows[1:]:
            values = (*row[: len(chain.FIELDS) - 1], prev)
            digest = chain.row_hash(b"attacker-key-attacker-key-123456", values)
            db.session.execute(
                text("UPDATE audit_event SET prev_hash = :p, hash = :h WHERE id = :i"),
                {"p": prev, "h": digest, "i": row[0]},
            )
            prev = digest
        db.session.commit()
    problem = run_verify(app).problem
    assert (problem.row_id, problem.kind) == (2, "changed")


def select_all():
    table = AuditEvent.__table__
    from sqlalchemy import select

    return select(*[table.c[n] for n in (*chain.FIELDS, "hash")]).order_by(table.c.id)


@both_databases
def test_cut_tail_is_seen_without_a_saved_head(app):
    """The audit_head row still names the removed last row: every verify compares the chain's end with it."""
    fill(app, 6)
    sql(app, "DELETE FROM audit_event WHERE id > 4")
    problem = run_verify(app).problem
    assert (problem.row_id, problem.kind) == (6, "tail_cut")
    assert "audit_head" in problem.message and "ends at row 4" in problem.message
    with app.app_context():
        recent = store.check_recent()
    assert (recent.problem.row_id, recent.problem.kind) == (6, "tail_cut")


@both_databases
def test_cut_tail_is_seen_by_the_incremental_check_after_a_mark(app):
    fill(app, 6)
    with app.app_context():
        assert store.check_recent().intact  # seals a mark at row 6
    sql(app, "DELETE FROM audit_event WHERE id > 4")
    with app.app_context():
        problem = store.check_recent().problem
    assert (problem.row_id, problem.kind) == (6, "tail_cut")
    assert "ends at row 4" in problem.message


@both_databases
def test_cut_tail_with_the_head_row_rolled_back_needs_a_saved_head(app):
    """Someone who also moves audit_head back leaves a shorter log that only an outside anchor can tell."""
    fill(app, 6)
    with app.app_context():
        saved = store.head()
        four = db.session.execute(text("SELECT hash FROM audit_event WHERE id = 4")).scalar()
    sql(app, "DELETE FROM audit_event WHERE id > 4")
    sql(app, "UPDATE audit_head SET last_id = 4, last_hash = :h", h=four)
    assert run_verify(app).intact
    problem = run_verify(app, saved).problem
    assert (problem.row_id, problem.kind) == (6, "tail_cut")
    assert "the saved head is row 6" in problem.message


@both_databases
def test_a_full_walk_holds_the_chain_to_the_sealed_mark_and_keeps_it_as_evidence(app):
    """A cut tail the badge reports (the mark names a row that is gone) is not called intact by
    `flask rewind audit verify`, which would also have moved the mark back and turned the badge green."""
    fill(app, 6)
    with app.app_context():
        assert store.check_recent().intact  # seals a mark at row 6
        four = db.session.execute(text("SELECT hash FROM audit_event WHERE id = 4")).scalar()
    sql(app, "DELETE FROM audit_event WHERE id > 4")
    sql(app, "UPDATE audit_head SET last_id = 4, last_hash = :h", h=four)
    problem = run_verify(app).problem
    assert (problem.row_id, problem.kind) == (6, "tail_cut")
    assert "the verified-up-to mark is row 6 but the log ends at row 4" in problem.message
    with app.app_context():
        assert store.read_mark().head.id == 6, "the evidence stays"
        assert store.check_recent().problem.kind == "tail_cut"


@both_databases
def test_saved_head_still_matches_after_growth(app):
    fill(app, 3)
    with app.app_context():
        saved = store.head()
    fill(app, 3)
    verdict = run_verify(app, saved)
    assert verdict.intact and verdict.checked == 6


@both_databases
def test_orm_refuses_to_rewrite_audit_rows(app):
    fill(app, 1)
    with app.app_context():
        event = db.session.get(AuditEvent, 1)
        event.outcome = "failed"
        with pytest.raises(RuntimeError, match="append-only"):
            db.session.commit()
        db.session.rollback()
        db.session.delete(db.session.get(AuditEvent, 1))
        with pytest.raises(RuntimeError, match="append-only"):
            db.session.commit()


@both_databases
def test_audit_row_commits_with_its_change_or_not_at_all(app):
    with app.app_context():
        store.record("test.rolled_back")
        db.session.rollback()
        store.record("test.kept", outcome=Outcome.FAILED)
        db.session.commit()
        events = db.session.query(AuditEvent).all()
        assert [(e.id, e.action, e.outcome) for e in events] == [(1, "test.kept", "failed")]
    assert run_verify(app).intact


@both_databases
def test_concurrent_writers_never_fork_the_chain(app):
    threads, per_thread = 8, 200

    def writer(n: int) -> None:
        with app.app_context():
            for i in range(per_thread):
                store.record("test.concurrent", details={"thread": n, "i": i})
                db.session.commit()
            db.session.remove()

    errors = all_at_once(writer, threads, timeout=300)
    assert not errors, errors
    verdict = run_verify(app)
    assert verdict.intact, verdict.problem
    assert verdict.checked == threads * per_thread == 1600


@both_databases
def test_incremental_check_finds_tampering_in_new_rows(app):
    fill(app, 4)
    with app.app_context():
        first = store.check_recent()
        assert first.intact and first.checked == 4 and store.read_mark().head.id == 4
    fill(app, 3)
    sql(app, "UPDATE audit_event SET target = 'production' WHERE id = 6")
    with app.app_context():
        verdict = store.check_recent()
        assert (verdict.problem.row_id, verdict.problem.kind) == (6, "changed")
        assert store.read_mark().head.id == 4, "a broken walk does not move the mark"


@both_databases
def test_incremental_check_refuses_a_forged_mark(app):
    """Someone with database access moves the mark to the end, to hide a change; the seal gives it away."""
    fill(app, 5)
    with app.app_context():
        end = store.head()
        store.save_mark(chain.Head(2, db.session.execute(text("SELECT hash FROM audit_event WHERE id = 2")).scalar()))
    sql(app, "UPDATE audit_event SET outcome = 'failed' WHERE id = 4")
    sql(app, "UPDATE audit_mark SET row_id = :i, row_hash = :h WHERE id = 1", i=end.id, h=end.hash)
    with app.app_context():
        mark = store.read_mark()
        assert mark is not None and not mark.genuine
        verdict = store.check_recent()
    assert verdict.problem.kind == "forged_mark" and "not sealed with the audit key" in verdict.problem.message
    assert not run_verify(app).intact, "the full walk finds the change the forged mark hid"


@both_databases
def test_a_full_walk_replaces_a_forged_mark_even_one_past_the_end(app):
    fill(app, 3)
    sql(app, "UPDATE audit_mark SET row_id = 1000000, row_hash = :h WHERE id = 1", h="f" * 64)
    with app.app_context():
        assert store.check_recent().problem.kind == "forged_mark"
    assert run_verify(app).intact
    with app.app_context():
        mark = store.read_mark()
        assert mark.genuine and mark.head.id == 3
        assert store.check_recent().intact


@both_databases
def test_full_verify_seals_the_mark_and_the_next_check_starts_there(app):
    fill(app, 5)
    assert run_verify(app).intact
    fill(app, 2)
    with app.app_context():
        assert store.read_mark().head.id == 5 and store.read_mark().genuine
        verdict = store.check_recent()
    assert verdict.intact and (verdict.since, verdict.checked, verdict.head.id) == (5, 2, 7)


@both_databases
def test_the_database_builds_the_exact_canonical_encoding(app):
    """The fast path: each row's bytes built in SQL equal chain.encode's, so no row needs the slow re-encode."""
    awkward = ['quote " and back\\slash', "tab\t new\nline \x01 \x1f \x7f", "zoë 🙂 \u2028", "", '{"json": [1]}']
    with app.app_context():
        for i, value in enumerate(awkward):
            store.record(
                f"test.{i}",
                actor=store.Actor(i or None, value or "x"),
                target=value or None,
                details={"v": value, "n": i, "f": 1.5, "none": None, "list": [value]},
            )
        db.session.commit()
        built = {row[0]: row[3] for batch in store._Proofs(0, None) for row in batch}
        reference = {row[0]: chain.encode(tuple(row[: len(chain.FIELDS)])) for row in db.session.execute(select_all())}
    assert built == reference


@pytest.mark.parametrize(
    "edit",
    [
        "substr(ts, 1, 19)",  # microseconds dropped
        "substr(ts, 1, 18) || '9' || substr(ts, 20)",  # a different second
    ],
)
def test_fast_and_reference_walks_agree_on_a_rewritten_timestamp(app, edit):
    """The SQL encoding only has to be right for the stored form; any other text falls back to the reference."""
    fill(app, 4)
    sql(app, f"UPDATE audit_event SET ts = {edit} WHERE id = 3")  # noqa: S608 - a fixed test expression
    with app.app_context():
        reference = chain.verify_rows(app.config["REWIND_AUDIT_KEY"], db.session.execute(select_all()).all())
        fast = store.verify()
    assert (fast.intact, fast.problem) == (reference.intact, reference.problem)


@pytest.mark.parametrize(
    "edit",
    [
        "substr(ts, 1, 10) || 'T' || substr(ts, 12)",  # the ISO separator instead of SQLite's space
        "substr(ts, 1, 10) || 'X' || substr(ts, 12)",  # the driver's parse takes any one character there
        "ts || ' (moved)'",
        "' ' || ts",
    ],
)
def test_a_timestamp_s_text_is_all_of_it_on_sqlite_not_the_time_a_parser_finds_in_it(app, edit):
    """SQLite keeps ts as text: any text but the form written is an edit, though the driver reads the same time
    from some (the walk passed a row whose separator was rewritten)."""
    fill(app, 4)
    sql(app, f"UPDATE audit_event SET ts = {edit} WHERE id = 3")  # noqa: S608 - a fixed test expression
    with app.app_context():
        found = store.verify()
    assert found.problem is not None and (found.problem.row_id, found.problem.kind) == (3, "changed"), found.problem


@both_databases
def test_a_rolled_back_row_leaves_its_id_to_the_next_writer_in_the_same_session(app):
    """A write whose transaction fails takes its audit row with it; the next record() reuses the id cleanly."""
    with app.app_context():
        kept = store.record("test.kept")
        db.session.commit()
        gone = store.record("test.rolled_back", details={"reason": "the write failed"})
        db.session.rollback()
        again = store.record("test.after", details={"reason": "refusal"})
        db.session.commit()
        assert (gone.id, again.id) == (kept.id + 1, kept.id + 1)
        actions = [e.action for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]
        assert actions[-2:] == ["test.kept", "test.after"]
    verdict = run_verify(app)
    assert verdict.intact


@both_databases
def test_writers_that_reserve_first_and_write_last_never_fork_the_chain(app):
    """A flag toggle takes its place while its flag is locked and writes its row after the flag's commit."""
    threads, per_thread = 6, 100

    def writer(n: int) -> None:
        with app.app_context():
            for i in range(per_thread):
                reserved = store.reserve("test.reserved", details={"thread": n, "i": i})
                store.write_and_commit(reserved)
            db.session.remove()

    errors = all_at_once(writer, threads, timeout=300)
    assert not errors, errors
    verdict = run_verify(app)
    assert verdict.intact, verdict.problem
    assert verdict.checked == threads * per_thread
    with app.app_context():
        assert store.recorded_head().id == threads * per_thread


@both_databases
def test_write_and_commit_commits_what_else_the_session_holds_with_the_row(app):
    from app.auth.models import User
    from app.auth.roles import Role

    with app.app_context():
        db.session.add(User(name="kept-with-row", role_value=int(Role.VIEWER), password_hash="x"))
        event = store.write_and_commit(store.reserve("test.with_user", details={"user": "kept-with-row"}))
        db.session.remove()
        assert db.session.query(User).filter_by(name="kept-with-row").count() == 1
        assert db.session.get(AuditEvent, event.id).action == "test.with_user"


@both_databases
def test_a_reserved_place_given_up_goes_to_the_next_writer(app):
    with app.app_context():
        store.reserve("test.never_written")
        db.session.rollback()
        event = store.record_and_commit("test.next")
        assert event.id == 1
    assert run_verify(app).intact


@both_databases
def test_a_nul_in_the_user_agent_is_kept_out_of_the_row(app):
    """PostgreSQL text holds no NUL: a header carrying one must not make the audit row (and the action) fail."""
    with app.test_request_context("/", headers={"User-Agent": "probe\x00agent"}):
        event = store.record_and_commit("test.nul_agent")
        assert event.user_agent == "probe\ufffdagent"
        db.session.remove()
        assert db.session.get(AuditEvent, event.id).user_agent == "probe\ufffdagent"
    assert run_verify(app).intact


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_after_the_pipelined_commit_the_pooled_connection_is_idle_and_the_next_transaction_its_own(app):
    """write_and_commit commits on the driver's connection, behind SQLAlchemy's back: the session must end its
    transaction too, so the next one on that pooled connection starts clean and rolls back only itself."""
    with app.app_context():
        event = store.write_and_commit(store.reserve("test.pipelined"))
        driver = db.session.connection().connection.driver_connection
        assert driver.info.transaction_status.name == "IDLE"  # nothing left open by the pipeline
        db.session.execute(text("SELECT 1"))
        assert driver.info.transaction_status.name == "INTRANS"  # a transaction of the session's own
        db.session.rollback()
        assert driver.info.transaction_status.name == "IDLE"
        store.record("test.rolled_back")
        db.session.rollback()
        db.session.remove()
        assert [e.action for e in db.session.query(AuditEvent).order_by(AuditEvent.id)] == ["test.pipelined"]
        assert store.recorded_head().id == event.id
    assert run_verify(app).intact


@both_databases
@pytest.mark.parametrize("row", [1, 4])
def test_a_break_the_full_walk_finds_behind_the_mark_is_what_the_web_check_then_says(app, row):
    """The badge checks only rows after the mark: with a row the mark vouched for changed since, it went on saying
    "intact" after `audit verify` and the self-check had both found the break."""
    fill(app, 6)
    assert run_verify(app).intact  # the mark now vouches for rows 1 to 6
    fill(app, 2)
    sql(app, "UPDATE audit_event SET outcome = 'failed' WHERE id = :row", row=row)
    with app.app_context():
        assert store.check_recent().intact  # the web's check alone cannot see behind the mark
    problem = run_verify(app).problem
    assert (problem.row_id, problem.kind) == (row, "changed")
    with app.app_context():
        mark = store.read_mark()
        assert (mark.head.id if mark else 0) == row - 1 and (mark is None or mark.genuine)
        seen = store.check_recent()
    assert (seen.problem.row_id, seen.problem.kind) == (row, "changed"), seen
    sql(app, "UPDATE audit_event SET outcome = 'ok' WHERE id = :row", row=row)  # put back as it was
    with app.app_context():
        again = store.check_recent()
    assert again.intact and again.head.id == 8


@both_databases
def test_a_badge_check_that_started_before_a_walk_moved_the_mark_back_does_not_move_it_forward_again(app):
    """The badge's check (one process) read mark 6 and walked on to 8 while a full walk (another process) found
    row 4 changed and moved the mark to 3: saving 8 then would hide the break again until the next walk."""
    fill(app, 6)
    assert run_verify(app).intact
    fill(app, 2)
    with app.app_context():
        started_from, walked_to = store.read_mark().head, store.head()
        three = chain.Head(3, db.session.execute(text("SELECT hash FROM audit_event WHERE id = 3")).scalar())
        store.move_mark_back(4, three)  # the full walk's finding
        store.save_mark(walked_to, since=started_from)  # the badge check's, from the mark it had read
        assert store.read_mark().head == three and store.read_mark().genuine
        store.move_mark_back(2, None)  # a walk that found row 2 changed, the mark still past it: no mark at all
        assert store.read_mark() is None
        store.move_mark_back(9, three)  # a break after the mark moves nothing
        assert store.read_mark() is None


def test_a_full_walk_is_recorded_sealed_and_a_badge_check_does_not_count_as_one(app):
    fill(app, 4)
    with app.app_context():
        assert store.check_recent().intact and store.read_mark().full is None, "the badge's check is not a full one"
    assert run_verify(app).intact
    with app.app_context():
        full = store.read_mark().full
    assert full is not None and full.row_id == 4
    fill(app, 2)
    with app.app_context():
        assert store.check_recent().intact
        mark = store.read_mark()
    assert mark.head.id == 6 and mark.full == full, "the mark moves on; the full check stays where it was"
    sql(app, "UPDATE audit_mark SET full_row_id = 6 WHERE id = 1")  # claimed without the audit key
    with app.app_context():
        assert store.read_mark().full is None
