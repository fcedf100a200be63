"""Roles are ordered: each one may do everything the ones below it may."""

from enum import IntEnum


class Role(IntEnum):
    VIEWER = 10
    OPERATOR = 20
    ADMIN = 30

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> "Role":
        """Turn a role name from a form or the CLI into a Role, or say which names exist."""
        try:
            return cls[value.strip().upper()]
        except KeyError:
            names = ", ".join(r.label for r in cls)
            raise ValueError(f"unknown role {value!r}; choose one of: {names}") from None
