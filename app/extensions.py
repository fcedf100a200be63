"""Flask extensions, created unbound so create_app() can wire them to any app."""

from flask_login import LoginManager
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

from app.migrating import LazyMigrate

db = SQLAlchemy()
migrate = LazyMigrate()  # Flask-Migrate, loaded by the `db` commands only
login_manager = LoginManager()
sock = Sock()
csrf = CSRFProtect()
