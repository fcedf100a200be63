"""The dashboard is tested on the same real code target as the deployments area."""

from tests.deployments.conftest import code_target  # noqa: F401 - a fixture, used by name
