"""Env file versions: metadata and keyed digests in clear, the file itself only as OpenPGP ciphertext."""

from __future__ import annotations

import json

from app.clock import utcnow
from app.extensions import db


class EnvVersion(db.Model):
    """One content of a target's env file, as Rewind saw or wrote it.

    `digests` maps each key to an HMAC of its name and value under Rewind's own
    key, so which keys changed between two versions is known without decrypting
    either; `sealed` is the whole file encrypted to Rewind's GnuPG key.
    """

    __tablename__ = "env_version"
    __table_args__ = (db.Index("ix_env_version_target_id", "target", "id"),)

    id = db.Column(db.Integer, primary_key=True)
    target = db.Column(db.String(64), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    source = db.Column(db.String(16), nullable=False)  # statuses.EnvSource
    reason = db.Column(db.String(255), nullable=False, default="")
    actor_name = db.Column(db.String(128), nullable=True)
    job_id = db.Column(db.Integer, db.ForeignKey("job.id"), nullable=True)
    path = db.Column(db.String(1024), nullable=False)
    file_mtime = db.Column(db.Float, nullable=True)
    file_owner = db.Column(db.String(64), nullable=True)
    file_digest = db.Column(db.String(64), nullable=False)
    size = db.Column(db.Integer, nullable=False)
    parse_error = db.Column(db.String(512), nullable=True)  # why the file does not parse, when it does not
    digests_json = db.Column("digests", db.Text, nullable=False, default="{}")
    changes_json = db.Column("changes", db.Text, nullable=False, default="{}")  # against the version before
    sealed = db.Column(db.LargeBinary, nullable=False)

    @property
    def digests(self) -> dict[str, str]:
        return json.loads(self.digests_json or "{}")

    @property
    def changes(self) -> dict:  # added/removed/changed: key names; since: the version compared with, when not the last
        return json.loads(self.changes_json or "{}")

    @property
    def compared_since(self) -> str:
        """When the version before this one did not parse: what its changes are against instead, in words."""
        changes = self.changes
        if "since" not in changes:
            return ""
        if changes["since"] is None:
            return "against nothing: no version before it parses"  # after a key list, or "no key changed"
        return f"since version #{changes['since']}, the newest before it that parses"

    @property
    def outside(self) -> bool:
        return self.source == "outside"
