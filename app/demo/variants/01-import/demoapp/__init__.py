"""The demo app: users, sessions, segments and feature flags behind a small Flask app."""

from flask import Flask

from . import config, db, views

__version__ = "1.3.0"


def create_app() -> Flask:
    settings = config.load()
    app = Flask(__name__)
    app.config.update(
        VERSION=__version__,
        SECRET_KEY=settings["SECRET_KEY"],
        DATABASE_URL=settings["DATABASE_URL"],
        APP_ENV=settings["APP_ENV"],
        FEATURE_X=settings["FEATURE_X"] == "on",
    )
    db.init_app(app)
    app.register_blueprint(views.bp)
    return app
