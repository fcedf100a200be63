"""The demo app: users, sessions, segments and feature flags behind a small Flask app."""

from flask import Flask

from . import config, db, views
from .cli import db_cli

__version__ = "1.4.0"


def create_app() -> Flask:
    settings = config.load()
    app = Flask(__name__)
    app.config.update(
        VERSION=__version__,
        SECRET_KEY=settings.secret_key,
        DATABASE_URL=settings.database_url,
        APP_ENV=settings.app_env,
        FEATURE_X=settings.feature_x,
    )
    db.init_app(app)
    app.register_blueprint(views.bp)
    app.cli.add_command(db_cli)
    return app
