from flask import Blueprint

bp = Blueprint("builds", __name__)

from . import routes  # noqa: E402,F401
