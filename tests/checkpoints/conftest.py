"""Checkpoint tests that need a running code target."""

from tests.deployments.conftest import code_target  # noqa: F401 - a fixture, used by name
