"""What a migration's downgrade() does, read from its source with `ast`: never run, never imported.

Finds the operations that can lose data (dropping a table or column,
changing a column's type, dropping a constraint or index, raw SQL) in
`op.…` calls and in `with op.batch_alter_table(…) as batch_op:` blocks, the
form Flask-Migrate generates for SQLite.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

KINDS = {"drop_table", "drop_column", "alter_column", "drop_constraint", "drop_index", "execute"}


@dataclass(frozen=True)
class Operation:
    revision: str
    kind: str
    table: str | None = None
    column: str | None = None
    detail: str = ""
    line: int = 0

    @property
    def loses_data(self) -> bool:
        """Dropping a table or column, a type change or raw SQL can lose data; an index or constraint cannot."""
        return self.kind in ("drop_table", "drop_column", "execute") or (
            self.kind == "alter_column" and "type" in self.detail
        )

    def __str__(self) -> str:
        where = ".".join(p for p in (self.table, self.column) if p)
        return f"{self.kind} {where}".strip() + (f" ({self.detail})" if self.detail else "")


def _text(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _arg(call: ast.Call, index: int, name: str) -> ast.AST | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return call.args[index] if len(call.args) > index else None


def _source(node: ast.AST | None) -> str:
    return ast.unparse(node) if node is not None else "?"


def _function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    return None


def _downgrade(tree: ast.Module) -> ast.FunctionDef | None:
    return _function(tree, "downgrade")


def _refusal(revision: str, func: ast.FunctionDef) -> Operation | None:
    """A downgrade() that raises unconditionally (`raise NotImplementedError`): the revision cannot go down."""
    for node in func.body:
        if isinstance(node, ast.Raise):
            raised = ast.unparse(node.exc) if node.exc is not None else "an exception"
            return Operation(revision, "raises", detail=raised, line=node.lineno)
    return None


def _is_empty(func: ast.FunctionDef | None) -> bool:
    """`pass`, `...` or a docstring only: a downgrade() that leaves what its upgrade() made."""
    if func is None:
        return True
    return all(
        isinstance(node, ast.Pass) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
        for node in func.body
    )


def downgrade_operations(revision: str, source: str) -> list[Operation]:
    """The data-touching operations of a revision file's downgrade(), in source order."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [Operation(revision, "unreadable", detail=f"the file does not parse: {exc.msg} line {exc.lineno}")]
    func = _downgrade(tree)
    if func is None:
        return []
    refusal = _refusal(revision, func)
    if refusal is not None:
        return [refusal]  # nothing after it runs
    if _is_empty(func) and not _is_empty(_function(tree, "upgrade")):
        return [Operation(revision, "empty", line=func.lineno)]
    batches: dict[str, str | None] = {}  # name bound by `with op.batch_alter_table(t) as NAME` -> t
    for node in ast.walk(func):
        if isinstance(node, ast.With):
            for item in node.items:
                call = item.context_expr
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "batch_alter_table"
                    and isinstance(item.optional_vars, ast.Name)
                ):
                    batches[item.optional_vars.id] = _text(_arg(call, 0, "table_name"))
    found = []
    for node in ast.walk(func):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        kind, owner = node.func.attr, node.func.value
        if kind not in KINDS or not isinstance(owner, ast.Name):
            continue
        in_batch = owner.id in batches
        if not in_batch and owner.id != "op":
            continue
        table = batches[owner.id] if in_batch else None
        found.append(_operation(revision, kind, node, table, in_batch))
    return sorted(found, key=lambda op: op.line)


def _operation(revision: str, kind: str, call: ast.Call, table: str | None, in_batch: bool) -> Operation:
    # In a batch block the table is implied, so every positional argument shifts left by one.
    shift = 0 if in_batch else 1
    line = call.lineno
    if kind == "drop_table":
        return Operation(revision, kind, _text(_arg(call, 0, "table_name")), line=line)
    if kind == "drop_column":
        if not in_batch:
            table = _text(_arg(call, 0, "table_name"))
        return Operation(revision, kind, table, _text(_arg(call, shift, "column_name")), line=line)
    if kind == "alter_column":
        if not in_batch:
            table = _text(_arg(call, 0, "table_name"))
        column = _text(_arg(call, shift, "column_name"))
        new_type = _arg(call, 99, "type_")
        details = []
        if new_type is not None:
            old = _arg(call, 99, "existing_type")
            was = f"{_source(old)} " if old is not None else ""
            details.append(f"type {was}-> {_source(new_type)}")
        nullable = _arg(call, 99, "nullable")
        if isinstance(nullable, ast.Constant) and nullable.value is False:
            details.append("made NOT NULL")
        if _arg(call, 99, "new_column_name") is not None:
            details.append(f"renamed to {_source(_arg(call, 99, 'new_column_name'))}")
        return Operation(revision, kind, table, column, "; ".join(details), line)
    if kind == "drop_constraint":
        name = _text(_arg(call, 0, "constraint_name"))
        if not in_batch:
            table = _text(_arg(call, 1, "table_name"))
        return Operation(revision, kind, table, detail=f"constraint {name or '?'}", line=line)
    if kind == "drop_index":
        name = _text(_arg(call, 0, "index_name"))
        if not in_batch:
            table = _text(_arg(call, 1, "table_name"))
        return Operation(revision, kind, table, detail=f"index {name or '?'}", line=line)
    sql = _arg(call, 0, "sqltext")
    text = _text(sql) or _source(sql)
    return Operation(revision, "execute", detail=" ".join(text.split())[:200], line=line)
