"""Hostile paths and parameters on every page and API route: never a 5xx, and the
ids, names and numbers no row can have are refused with the reason (app/params.py)."""
import pytest
from flask import current_app

from app.extensions import db
from app.models import LogChunk
from app.models import MAX_INTEGER
from app.specs.service import create_spec

HUGE = "18446744073709551616"  # 2**64
HOSTILE_IDS = [str(MAX_INTEGER + 1), HUGE, "9" * 5000]
HOSTILE_NAMES = ["%00", "a%00b", "%01x", "x" * 256, "%E2%80%AE", "..%2F..%2Fetc", "'%20OR%201=1--"]
HOSTILE_NUMBERS = [HUGE, "-" + HUGE, "9" * 5000, "-1", "1e3", "0x10", "1_000", "%00", "%EF%BC%91", " ", "1.5"]


@pytest.fixture
def data(app):
    """A spec with a job that has a log: what a hostile request could reach."""
    outcome = create_spec({"name": "demo", "base_image": "debian:bookworm", "apt": "curl"})
    db.session.add(LogChunk(job_id=outcome.job.id, seq=0, text="STEP 1/1: FROM debian\n"))
    db.session.commit()
    return outcome.job


def every_rule(prefix_wanted):
    for rule in current_app.url_map.iter_rules():
        if rule.endpoint in ("static", "api.unknown_route") or rule.endpoint.startswith("rq_dashboard"):
            continue
        if rule.rule.startswith("/api/") == prefix_wanted and rule.arguments:
            yield rule


def hostile_urls(rule):
    """The rule's URL with each hostile value in each of its arguments (the others real)."""
    for argument in sorted(rule.arguments):
        is_id = type(rule._converters[argument]).__name__ == "IdConverter"
        for value in HOSTILE_IDS if is_id else HOSTILE_NAMES:
            yield _substitute(rule.rule, argument, value)


def _substitute(template, argument, value):
    url = template
    for name, real in (("job_id", "1"), ("name", "demo")):
        replacement = value if name == argument else real
        url = url.replace(f"<int:{name}>", replacement).replace(f"<{name}>", replacement)
    return url


@pytest.mark.parametrize("api_routes", [False, True], ids=["pages", "api"])
def test_every_route_refuses_ids_and_names_no_row_can_have(client, auth, api, data, api_routes):
    send = api if api_routes else client
    checked = 0
    for rule in every_rule(api_routes):
        for url in hostile_urls(rule):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                response = getattr(send, method.lower())(url)
                assert response.status_code < 500, (method, url, response.status_code)
                if api_routes:
                    assert response.status_code == 404 and response.is_json, (method, url)
                checked += 1
    assert checked > 50


@pytest.mark.parametrize(
    "url, message",
    [
        (f"/api/v1/jobs/{HUGE}", f"No such id: {HUGE} is larger than any id (2147483647)."),
        ("/api/v1/specs/a%00b", "No such name: names have at most 255 characters and no control characters."),
    ],
)
def test_an_id_beyond_any_row_is_a_404_saying_so(api, url, message):
    response = api.get(url)
    assert response.status_code == 404
    assert response.get_json() == {"error": message}


def test_a_page_id_beyond_any_row_is_the_not_found_page(client, auth):
    response = client.get(f"/jobs/{HUGE}")
    assert response.status_code == 404 and "Not found" in response.get_data(as_text=True)


@pytest.mark.parametrize("value", HOSTILE_NUMBERS)
@pytest.mark.parametrize(
    "path, parameter",
    [
        ("/?page={}", "page"),
        ("/specs/demo/edit?tab=jobs&page={}", "page"),
        ("/jobs/{job}/log?offset={}", "offset"),
        ("/api/v1/specs/demo/jobs?page={}", "page"),
        ("/api/v1/specs/demo/jobs?per_page={}", "per_page"),
        ("/api/v1/jobs/{job}/log?offset={}", "offset"),
    ],
)
def test_hostile_numbers_in_query_parameters_are_a_422_naming_them(client, auth, api, data, path, parameter, value):
    url = path.replace("{job}", str(data.id)).format(value)
    response = (api if url.startswith("/api/") else client).get(url)
    if value == " " or (parameter == "per_page" and value in (HUGE, "9" * 5000)):
        # Blank is "not given"; a page size above the largest is the largest (below).
        assert response.status_code == 200
        return
    assert response.status_code == 422, (url, response.status_code)
    if url.startswith("/api/"):
        (error,) = response.get_json()["errors"]
        assert error["field"] == parameter
    else:
        assert f"Query parameter &#39;{parameter}&#39;" in response.get_data(as_text=True)


def test_a_huge_page_size_is_taken_as_the_largest(api, data):
    body = api.get(f"/api/v1/specs/demo/jobs?per_page={HUGE}").get_json()
    assert body["per_page"] == 100 and body["total"] == 1


def test_the_spec_list_pages_with_a_total_and_links(api):
    for n in range(5):
        create_spec({"name": f"spec{n}", "base_image": "debian:bookworm"})
    response = api.get("/api/v1/specs?per_page=2&page=2")
    body = response.get_json()
    assert [s["name"] for s in body["specs"]] == ["spec2", "spec3"]
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (2, 2, 5, 3)
    assert response.headers["Link"] == (
        '</api/v1/specs?page=1&per_page=2>; rel="first", </api/v1/specs?page=1&per_page=2>; rel="prev", '
        '</api/v1/specs?page=3&per_page=2>; rel="next", </api/v1/specs?page=3&per_page=2>; rel="last"'
    )
    last = api.get("/api/v1/specs?per_page=2&page=3")
    assert 'rel="next"' not in last.headers["Link"] and [s["name"] for s in last.get_json()["specs"]] == ["spec4"]


@pytest.mark.parametrize("fields, field", [
    ({"name": "\x00"}, "name"),
    ({"name": "nul-secret", "pull_secret": "a\x00b"}, "pull_secret"),
])
def test_a_nul_byte_in_a_name_is_a_422_on_every_database(api, client, auth, fields, field):
    # PostgreSQL refuses NUL in text even in a WHERE: the name is judged before any lookup.
    body = {"name": "x", "base_image": "debian:bookworm", **fields}
    answer = api.post("/api/v1/specs", json=body)
    assert answer.status_code == 422
    assert field in [error["field"] for error in answer.get_json()["errors"]]
    if field == "name":  # the form sends a pull secret only with its checkbox ticked
        assert client.post("/specs/new", data=body).status_code == 422
