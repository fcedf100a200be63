"""Flask extensions, created unbound so create_app() can wire them to any app."""

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

db = SQLAlchemy()
# The widest integer key either ops database stores (SQLite and PostgreSQL bigint): an id from a person that is
# bigger names no row, and must be answered so rather than handed to the driver, which raises OverflowError.
ROW_ID_MAX = 2**63 - 1
migrate = Migrate()
login_manager = LoginManager()
sock = Sock()
csrf = CSRFProtect()
