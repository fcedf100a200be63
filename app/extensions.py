"""Flask extensions, created unbound so create_app() can wire them to any app (Flask-Migrate: app/migrating.py)."""

from flask_login import LoginManager
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

db = SQLAlchemy()
login_manager = LoginManager()
sock = Sock()
csrf = CSRFProtect()
