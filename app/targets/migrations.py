"""A target's migrations as a RevisionGraph: from its migrations folder, or from the folder as a commit holds it.

Alembic's ScriptDirectory reads the revision files directly; env.py is never
run, because a Flask-Migrate env.py imports the application (its settings,
its database, its side effects). `down_revision` comes from the code of each
file, never from its docstring or its date. A file that cannot be imported
here (it imports the application's own modules) has its identifiers read
from its source with `ast` instead, as written. Reading a commit copies its
migrations folder out of git into a temporary folder first, so the answer is
what that commit holds, not what the working tree happens to have.
"""

from __future__ import annotations

import ast
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from app.targets.errors import TargetError
from app.targets.git import GitError, GitRepo
from app.targets.revision_graph import GraphError, Revision, RevisionGraph

# ScriptDirectory executes each revision file; one read at a time keeps two threads from
# loading the same module name at once.
_LOAD = threading.Lock()


class MigrationsError(TargetError):
    """The migrations folder cannot be read as Alembic revisions."""


def read_folder(folder: Path) -> RevisionGraph:
    """The revision graph of a migrations folder (the one holding versions/)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    folder = Path(folder)
    if not (folder / "versions").is_dir():
        raise MigrationsError(
            f"{folder} has no versions/ folder: it is not an Alembic migrations folder",
            fix="set database.migrations in the targets file to the folder `flask db init` made",
        )
    try:
        with _LOAD:
            # The revision files as Alembic loads them, before its map is built: a missing parent or a
            # cycle is then said by RevisionGraph in words, rather than as Alembic's KeyError mid-walk.
            scripts = list(ScriptDirectory(str(folder))._load_revisions())
    except CommandError as exc:
        raise MigrationsError(f"Alembic cannot read {folder}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a revision file may raise anything when it is loaded
        # Real revision files import the application's models or helpers (`from app.models import …`,
        # `import sqlalchemy_utils`), which only its own environment has: read their identifiers as written.
        scripts = _read_as_written(folder, f"{type(exc).__name__}: {exc}")
    revisions = []
    seen: dict[str, str] = {}
    for script in scripts:
        name = Path(script.path).name
        if script.revision in seen:
            raise MigrationsError(f"revision {script.revision} is declared twice: {seen[script.revision]} and {name}")
        seen[script.revision] = name
        revisions.append(
            Revision(
                id=script.revision,
                down=_tuple(script.down_revision),
                depends_on=_tuple(script.dependencies),
                message=script.doc.splitlines()[0] if script.doc else "",
                file=name,
                branch_labels=tuple(script.branch_labels or ()),
            )
        )
    try:
        return RevisionGraph.of(_without_labels(revisions))
    except GraphError as exc:
        raise MigrationsError(f"{folder}: {exc.message}", fix=exc.fix) from None


@dataclass(frozen=True)
class _Written:
    """A revision file's identifiers as its source assigns them (what ScriptDirectory would have loaded)."""

    path: str
    revision: str
    down_revision: str | tuple[str, ...] | None
    dependencies: str | tuple[str, ...] | None
    branch_labels: str | tuple[str, ...] | None
    doc: str


_IDENTIFIERS = ("revision", "down_revision", "depends_on", "branch_labels")
_NOT_LITERAL = object()  # an identifier assigned something other than a literal


def _read_as_written(folder: Path, loading_error: str) -> list[_Written]:
    """Every revision file's identifiers from its source (`ast`), for files that cannot be imported here."""
    found = []
    for path in sorted((folder / "versions").glob("*.py")):
        if path.name == "__init__.py":
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=path.name)
        except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
            raise MigrationsError(
                f"the migration file {path.name} in {folder} cannot be read: {exc}",
                fix="fix the file; Rewind reads revision files without importing the application",
            ) from None
        values: dict[str, object] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for name in (t.id for t in targets if isinstance(t, ast.Name) and t.id in _IDENTIFIERS):
                    try:
                        values[name] = ast.literal_eval(node.value) if node.value is not None else None
                    except ValueError:
                        values[name] = _NOT_LITERAL
        revision = values.get("revision")
        if not isinstance(revision, str) or any(v is _NOT_LITERAL for v in values.values()):
            raise MigrationsError(
                f"the migration file {path.name} in {folder} cannot be loaded here ({loading_error}), and its "
                "revision identifiers are not written as plain strings",
                fix="write revision and down_revision as string literals (as Alembic generates them), "
                "so they can be read without importing the application",
            )
        found.append(
            _Written(
                path=str(path),
                revision=revision,
                down_revision=values.get("down_revision"),
                dependencies=values.get("depends_on"),
                branch_labels=_tuple(values.get("branch_labels")),
                doc=ast.get_docstring(tree) or "",
            )
        )
    return found


def _tuple(value) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _without_labels(revisions: list[Revision]) -> list[Revision]:
    """depends_on may name a branch label: turn it into the revision that carries it."""
    labels = {label: r.id for r in revisions for label in r.branch_labels}
    return [
        Revision(r.id, r.down, tuple(labels.get(d, d) for d in r.depends_on), r.message, r.file, r.branch_labels)
        for r in revisions
    ]


def folder_in_repo(repo: GitRepo, folder: Path) -> str:
    """The migrations folder as a path inside the repository, for reading it at a commit."""
    try:
        return Path(folder).resolve().relative_to(Path(repo.path).resolve()).as_posix()
    except ValueError:
        raise MigrationsError(
            f"the migrations folder {folder} is not inside the repository {repo.path}",
            fix="keep the migrations in the application's repository, so each commit says which revisions it knows",
        ) from None


def read_files(files: dict[str, str], where: str) -> RevisionGraph:
    """The revision graph of revision files given as {file name: text}, e.g. as a commit holds them."""
    with tempfile.TemporaryDirectory(prefix="rewind-migrations-") as temp:
        root = Path(temp) / "migrations"
        (root / "versions").mkdir(parents=True)
        for name, text in files.items():
            (root / "versions" / Path(name).name).write_text(text)
        try:
            return read_folder(root)
        except MigrationsError as exc:
            raise MigrationsError(exc.message.replace(str(root), where), fix=exc.fix) from None


def read_commit(repo: GitRepo, sha: str, folder: Path) -> RevisionGraph:
    """The revision graph the commit `sha` holds in its copy of the migrations folder."""
    return read_files(files_at(repo, sha, folder), f"{folder_in_repo(repo, folder)} at {sha[:12]}")


def files_at(repo: GitRepo, sha: str, folder: Path) -> dict[str, str]:
    """The revision files (versions/NAME.py -> text) of the migrations folder at a commit."""
    inside = folder_in_repo(repo, folder)
    try:
        files = repo.files_at(sha, inside)
    except GitError as exc:
        raise MigrationsError(f"cannot read {inside} at {sha[:12]}: {exc.message}") from None
    return {k.removeprefix("versions/"): v for k, v in files.items() if _is_revision_file(k)}


def extract(repo: GitRepo, sha: str, folder: Path, into: Path) -> Path:
    """Write the whole migrations folder (env.py, alembic.ini, versions/…) as commit `sha` holds it under `into`."""
    inside = folder_in_repo(repo, folder)
    try:
        files = repo.files_at(sha, inside)
    except GitError as exc:
        raise MigrationsError(f"cannot read {inside} at {sha[:12]}: {exc.message}") from None
    root = Path(into) / "migrations"
    (root / "versions").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _is_revision_file(name: str) -> bool:
    return name.startswith("versions/") and name.count("/") == 1 and name.endswith(".py") and "__init__" not in name


def folder_files(folder: Path) -> dict[str, str]:
    """The revision files of a migrations folder on disk, as files_at() gives them for a commit."""
    versions = Path(folder) / "versions"
    return {p.name: p.read_text() for p in sorted(versions.glob("*.py")) if p.name != "__init__.py"}
