"""The demo sandbox: two real targets, staging and production, built for a first look at Rewind."""

from app.demo.build import DemoError, DemoTarget, build_demo, load_demo, stop_demo

__all__ = ["DemoError", "DemoTarget", "build_demo", "load_demo", "stop_demo"]
