"""What a target's backups are made of: its database, its GnuPG home, its recipients, its catalog."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.backups.catalog import Catalog
from app.targets.config import TargetConfig
from app.targets.dbadmin import Postgres, Sqlite, open_database
from app.targets.errors import TargetError
from app.targets.gpg import GpgHome
from app.targets.target import Target


class NotConfigured(TargetError):
    """The target lacks the part of the targets file that backups need."""


@dataclass(frozen=True)
class BackupSetup:
    target: Target
    database: Postgres | Sqlite
    home: GpgHome
    recipients: tuple[str, ...]
    catalog: Catalog
    key_tables: tuple[str, ...]
    reserve_bytes: int

    @property
    def kind(self) -> str:
        return "sqlite" if isinstance(self.database, Sqlite) else "postgresql"


def catalog_of(target: Target) -> Catalog:
    backups = target.config.backups
    if backups is None:
        raise NotConfigured(
            f"{target.name} has no backups configured", fix=f"add [targets.{target.name}.backups] with dir = …"
        )
    return catalog_for(target.config)


def catalog_for(config: TargetConfig) -> Catalog:
    """The catalog of a target with backups: its folder, seen as its database's (see Catalog.database)."""
    database = config.database
    name = open_database(database.url, {}, database.pg_bin).name if database is not None else None
    return Catalog(config.backups.dir, name)


def setup_of(target: Target) -> BackupSetup:
    config = target.config
    if config.database is None:
        raise NotConfigured(
            f"{target.name} has no database configured", fix=f"add [targets.{target.name}.database] with url = …"
        )
    catalog = catalog_of(target)
    backups = config.backups
    if not backups.recipients:
        raise NotConfigured(
            f"{target.name} names no backup recipients",
            fix=f'set recipients = ["ops@example.org"] in [targets.{target.name}.backups]',
        )
    env = target.command_env()
    home = GpgHome(
        backups.gpg_home or Path(env.get("HOME", "~")).expanduser() / ".gnupg", env=env, passphrase=backups.passphrase
    )
    return BackupSetup(
        target=target,
        database=open_database(config.database.url, env, config.database.pg_bin),
        home=home,
        recipients=backups.recipients,
        catalog=catalog,
        key_tables=config.database.key_tables,
        reserve_bytes=backups.reserve_mb * 1024 * 1024,
    )
