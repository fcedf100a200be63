"""The revision graph read from a folder and from a commit, the version table, flask db, downgrade operations."""

import pytest

from app.schema import migrate
from app.targets import flask_db, migrations
from app.targets.git import GitRepo
from app.targets.migration_ops import downgrade_operations
from app.targets.registry import Targets
from app.targets.revision_graph import RevisionError
from app.targets.schema_db import count, current_revisions, schema_objects
from tests.schema.apps import revision_file
from tests.schema.conftest import both_target_databases
from tests.support.sinks import Lines


def open_target(shop, tmp_path):
    path = tmp_path / "targets.toml"
    path.write_text(shop.toml())
    return Targets(path, tmp_path / "instance").load().open(shop.name)


def test_graph_with_a_branch_and_a_merge_read_without_importing_the_app(shop):
    (shop.migrations / "env.py").write_text("raise SystemExit('env.py must never run')\n")
    graph = migrations.read_folder(shop.migrations)
    assert graph.heads == ["d4000004"]
    assert graph.bases == ["a1000001"]
    assert graph.branch_points() == ["b2000002"]
    assert graph.merges() == ["d4000004"]
    assert graph.revisions["d4000004"].down == ("c3aaaaa3", "c3bbbbb3")
    assert graph.revisions["b2000002"].message == "add user.token"
    order = graph.newest_first()
    assert order[0] == "d4000004" and order[-1] == "a1000001"
    assert order.index("b2000002") > order.index("c3aaaaa3")


def test_down_revision_comes_from_the_code_not_the_docstring(shop):
    (shop.migrations / "versions" / "b2000002_x.py").write_text(revision_file("b2000002", lie_in_docstring=True))
    graph = migrations.read_folder(shop.migrations)
    assert graph.revisions["b2000002"].down == ("a1000001",)


def test_a_missing_parent_is_a_clear_error(shop):
    (shop.migrations / "versions" / "b2000002_x.py").unlink()
    with pytest.raises(migrations.MigrationsError) as caught:
        migrations.read_folder(shop.migrations)
    assert caught.value.message.endswith(
        "revision c3aaaaa3 (c3aaaaa3_x.py) names b2000002 as its parent, but no migration file has it"
    )


def test_not_a_migrations_folder(tmp_path):
    with pytest.raises(migrations.MigrationsError) as caught:
        migrations.read_folder(tmp_path)
    assert "versions/" in caught.value.message and "database.migrations" in caught.value.fix


def test_graph_at_a_commit_reads_git_not_the_working_tree(shop):
    repo = GitRepo(shop.repo, "main")
    (shop.migrations / "versions" / "c3aaaaa3_x.py").unlink()  # the working tree no longer matters
    at_tokens = migrations.read_commit(repo, shop.commits["tokens"], shop.migrations)
    assert sorted(at_tokens.revisions) == ["a1000001", "b2000002"]
    at_head = migrations.read_commit(repo, shop.commits["posts and index"], shop.migrations)
    assert at_head.heads == ["d4000004"]


def test_which_commit_added_each_file(shop):
    added = GitRepo(shop.repo, "main").added_by("migrations/versions")
    assert added["migrations/versions/a1000001_x.py"].sha == shop.commits["the app"]
    assert added["migrations/versions/d4000004_x.py"].subject == "posts and index"


def test_walks_and_ambiguity(shop):
    graph = migrations.read_folder(shop.migrations)
    assert graph.resolve("b2") == "b2000002"
    with pytest.raises(RevisionError, match="ambiguous") as caught:
        graph.resolve("c3")
    assert caught.value.choices == ("c3aaaaa3", "c3bbbbb3")
    with pytest.raises(RevisionError, match="no revision 'zz'"):
        graph.resolve("zz")
    with pytest.raises(RevisionError, match="merges") as caught:
        graph.one_step_down({"d4000004"})
    assert caught.value.choices == ("c3aaaaa3", "c3bbbbb3")
    with pytest.raises(RevisionError, match="2 heads"):
        graph.one_step_down({"c3aaaaa3", "c3bbbbb3"})
    assert graph.one_step_down({"b2000002"}) == "a1000001"
    order, rows = graph.downgrade_plan({"d4000004"}, "c3bbbbb3")
    assert order == ["d4000004"] and rows == {"c3aaaaa3", "c3bbbbb3"}  # the other branch stays, as in Alembic
    order, rows = graph.downgrade_plan({"d4000004"}, "b2000002")
    assert set(order) == {"d4000004", "c3aaaaa3", "c3bbbbb3"} and rows == {"b2000002"}
    with pytest.raises(RevisionError, match="not applied"):
        graph.downgrade_plan({"b2000002"}, "c3aaaaa3")
    order, rows = graph.upgrade_plan({"b2000002"}, "c3aaaaa3")
    assert order == ["c3aaaaa3"] and rows == {"c3aaaaa3"}
    assert graph.pending({"c3aaaaa3"}) == ["d4000004", "c3bbbbb3"]
    assert graph.unknown({"b2000002", "ffff0000"}) == ["ffff0000"]


def test_depends_on_is_applied_first_but_is_no_ancestor_in_the_version_table(shop):
    shop.add_revisions("cross-branch", "e5000005", down="c3aaaaa3", depends="c3bbbbb3")
    graph = migrations.read_folder(shop.migrations)
    assert sorted(graph.heads) == ["d4000004", "e5000005"]
    assert "c3bbbbb3" in graph.applied({"e5000005"})
    _order, rows = graph.upgrade_plan({"b2000002"}, "e5000005")
    assert rows == {"e5000005", "c3bbbbb3"}


@both_target_databases
def test_flask_db_runs_in_the_apps_environment_and_the_table_says_where_it_is(shop, tmp_path):
    target = open_target(shop, tmp_path)
    if not shop.url.startswith("sqlite"):
        assert current_revisions(shop.url) == set()  # no alembic_version table yet
    sink = Lines()
    flask_db.run(target, "upgrade", "b2000002", sink)
    assert current_revisions(shop.url) == {"b2000002"}
    shop.execute("INSERT INTO \"user\" (name, token) VALUES ('ann', 'x'), ('bob', NULL), ('cy', 'y')")
    assert count(shop.url, "user") == 3
    assert count(shop.url, "user", "token") == 2
    assert count(shop.url, "post") is None
    assert count(shop.url, "user", "nope") is None
    flask_db.run(target, "upgrade", "heads", sink)
    assert current_revisions(shop.url) == {"d4000004"}
    assert "$ " in sink.text() and "db upgrade" in sink.text()


def test_env_file_lines_are_read(tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("# settings\nexport DATABASE_URL='sqlite:////elsewhere.db'\nSECRET=\"s\"\n\nbad line\n")
    assert flask_db.read_env_file(env_file) == {"DATABASE_URL": "sqlite:////elsewhere.db", "SECRET": "s"}


def test_downgrade_operations_from_the_source():
    ops = downgrade_operations("b2000002", revision_file("b2000002"))
    assert [(o.kind, o.table, o.column) for o in ops] == [("drop_column", "user", "token")]
    assert ops[0].loses_data
    ops = downgrade_operations("c3bbbbb3", revision_file("c3bbbbb3"))
    assert [(o.kind, o.table, o.detail) for o in ops] == [("drop_index", "user", "index ix_user_name")]
    assert not ops[0].loses_data
    source = """
def upgrade():
    op.drop_table("never_counted")

def downgrade():
    op.alter_column("user", "age", existing_type=sa.String(), type_=sa.Integer())
    op.drop_constraint("fk_x", "post", type_="foreignkey")
    op.execute("DELETE FROM audit")
    op.drop_column("user", column_name="token")
"""
    ops = downgrade_operations("r", source)
    assert [str(o) for o in ops] == [
        "alter_column user.age (type sa.String() -> sa.Integer())",
        "drop_constraint post (constraint fk_x)",
        "execute (DELETE FROM audit)",
        "drop_column user.token",
    ]


@both_target_databases
def test_a_view_is_one_schema_object_not_columns_of_a_table(shop):
    # A failed migration that dropped a view in an autocommit block said "column recent.id is gone, column
    # recent.name is gone" on PostgreSQL (information_schema.columns lists a view's columns), sending the reader to
    # look for a table "recent"; SQLite said "view recent on recent".
    shop.execute("CREATE TABLE item (id integer, name varchar(10))")
    shop.execute("CREATE VIEW recent AS SELECT id, name FROM item")
    before = schema_objects(shop.url)
    assert "view recent" in before and "column item.name" in before
    assert not {name for name in before if "recent" in name} - {"view recent"}
    shop.execute("DROP VIEW recent")
    assert migrate._changed(before, schema_objects(shop.url)) == "view recent is gone"
