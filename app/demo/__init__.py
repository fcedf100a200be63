"""The demo sandbox: two real targets, staging and production, built for a first look at Rewind."""

from app.demo.build import build_demo, load_demo, stop_demo
from app.demo.target import DemoError, DemoTarget

__all__ = ["DemoError", "DemoTarget", "build_demo", "load_demo", "stop_demo"]
