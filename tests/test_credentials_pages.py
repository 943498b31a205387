"""Registry credential pages: list, add, edit, delete, and a stored password never shown again."""
import pytest
from sqlalchemy import select

from app.credentials.service import create_credential, credential_password
from app.extensions import db
from app.models import ImageSpec, RegistryCredential
from app.specs.service import create_spec

pytestmark = pytest.mark.usefixtures("queued_rq_jobs")

PASSWORD = "s3cr3t-Pa55word-never-shown"
CREDENTIAL = {"name": "corp", "registry": "registry.example.com:5000", "username": "robot", "password": PASSWORD}


def html(response):
    return response.get_data(as_text=True)


def stored(name="corp"):
    db.session.expire_all()
    return db.session.scalar(select(RegistryCredential).where(RegistryCredential.name == name))


@pytest.fixture
def credential(app):
    cred, errors = create_credential(CREDENTIAL)
    assert not errors
    return cred


def test_empty_list_says_what_to_do(client, auth):
    body = html(client.get("/credentials/"))
    assert "No registry credentials" in body and 'href="/credentials/new"' in body


def test_add_saves_and_lists_the_credential_with_its_use(client, auth):
    response = client.post("/credentials/new", data=CREDENTIAL, follow_redirects=True)
    body = html(response)
    assert "Saved registry credential corp" in body
    assert "registry.example.com:5000" in body and "robot" in body and "no specs" in body
    assert credential_password(stored()) == PASSWORD
    create_spec({"name": "private", "base_image": "registry.example.com:5000/base:1", "pull_secret": "corp"})
    assert "1 spec" in html(client.get("/credentials/"))


def test_add_with_errors_keeps_what_was_typed_except_the_password(client, auth):
    response = client.post("/credentials/new", data={**CREDENTIAL, "name": "Bad Name", "registry": "not a host"})
    assert response.status_code == 422
    body = html(response)
    assert 'value="Bad Name"' in body and 'value="not a host"' in body and 'value="robot"' in body
    assert "Use lowercase letters" in body and "A registry host" in body
    assert "enter it again" in body
    assert PASSWORD not in body
    assert stored("Bad Name") is None


def test_the_stored_password_never_appears_in_any_page(client, auth, credential):
    create_spec({"name": "private", "base_image": "registry.example.com:5000/base:1", "pull_secret": "corp"})
    pages = [
        client.get("/credentials/"),
        client.get("/credentials/corp/edit"),
        client.post("/credentials/corp/edit", data={"registry": "bad host", "username": "robot", "password": ""}),
        client.get("/specs/new"),
        client.get("/specs/private/edit"),
        client.get("/"),
        client.get("/jobs/1"),
        client.post("/credentials/corp/delete", follow_redirects=True),
    ]
    for response in pages:
        assert response.status_code in (200, 422)
        assert PASSWORD not in html(response)
        assert credential.password_encrypted not in html(response)


def test_edit_keeps_the_password_when_left_empty(client, auth, credential):
    body = html(client.get("/credentials/corp/edit"))
    assert 'name="password" type="password" value=""' in body
    assert "Leave empty to keep the current one" in body
    response = client.post("/credentials/corp/edit", data={"registry": "other.example.com", "username": "bot", "password": ""})
    assert response.status_code == 302
    cred = stored()
    assert (cred.registry_host, cred.username) == ("other.example.com", "bot")
    assert credential_password(cred) == PASSWORD


def test_edit_with_a_new_password_replaces_it(client, auth, credential):
    client.post("/credentials/corp/edit", data={"registry": CREDENTIAL["registry"], "username": "robot", "password": "n3w-one"})
    assert credential_password(stored()) == "n3w-one"


def test_delete_is_refused_while_a_spec_uses_the_credential(client, auth, credential):
    create_spec({"name": "private", "base_image": "registry.example.com:5000/base:1", "pull_secret": "corp"})
    body = html(client.post("/credentials/corp/delete", follow_redirects=True))
    assert "Not deleted" in body and "private" in body
    assert stored() is not None


def test_delete_an_unused_credential(client, auth, credential):
    body = html(client.post("/credentials/corp/delete", follow_redirects=True))
    assert "Deleted registry credential corp" in body
    assert stored() is None
    assert client.post("/credentials/corp/delete").status_code == 404
    assert client.get("/credentials/corp/edit").status_code == 404


def test_spec_form_offers_stored_credentials_as_pull_secrets(client, auth, credential):
    body = html(client.get("/specs/new"))
    assert '<option value="corp">corp (robot@registry.example.com:5000)</option>' in body
    response = client.post(
        "/specs/new",
        data={"name": "private", "base_image": "registry.example.com:5000/base:1", "use_pull_secret": "1", "pull_secret": "corp"},
    )
    assert response.status_code == 302
    edit = html(client.get("/specs/private/edit"))
    assert '<option value="corp" selected>' in edit
    assert 'id="use_pull_secret"' in edit and "checked" in edit[edit.index('id="use_pull_secret"'):][:200]
    # Unticking the box drops the pull secret, which is a change, so it builds again.
    client.post("/specs/private/edit", data={"base_image": "registry.example.com:5000/base:1", "pull_secret": "corp"})
    assert db.session.scalar(select(ImageSpec).where(ImageSpec.name == "private")).pull_secret is None
