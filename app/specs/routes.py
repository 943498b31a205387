from flask import render_template

from . import bp
from .service import spec_rows


@bp.route("/")
def index():
    return render_template("specs/index.html", rows=spec_rows())
