from flask import Blueprint

bp = Blueprint("credentials", __name__)

from . import routes  # noqa: E402,F401
