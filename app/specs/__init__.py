from flask import Blueprint

bp = Blueprint("specs", __name__)

from . import routes  # noqa: E402,F401
