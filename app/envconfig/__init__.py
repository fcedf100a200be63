"""Configuration rollback: encrypted versions of a target's env file, masked diffs, and a restore that undoes itself."""
