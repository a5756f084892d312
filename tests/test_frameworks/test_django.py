"""Django, unchanged, on every HTTP version: the admin login with CSRF, 1 MiB posts, streaming.

The project is examples/frameworks/django_app.py, its SQLite database in a
temporary directory, migrated and given a superuser at setup; one server
for the whole module. Every request with a body failed with 500 before
``receive()`` stopped handing out an empty ``http.request`` after the body
(test_asgi_spec.py), which Django refuses. Django serves no WebSockets
(Channels does): there is no WebSocket test here.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers.certs import TLSFiles
from tests.test_frameworks.apps import load_example
from tests.test_frameworks.conftest import Browser, Served, serve

MIB = 1024 * 1024
USER, PASSWORD = "admin", "correct horse battery staple"


@pytest.fixture(scope="module")
def django_app(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The project, its database migrated in a temporary directory, with a superuser."""
    database = Path(tmp_path_factory.mktemp("django")) / "db.sqlite3"
    os.environ["HFACE_DJANGO_DB"] = str(database)
    module = load_example("django_app")
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections

    assert settings.DATABASES["default"]["NAME"] == str(database)  # configured once per process
    call_command("migrate", verbosity=0, interactive=False)
    get_user_model().objects.create_superuser(USER, "admin@example.com", PASSWORD)
    connections.close_all()  # the server's threads open their own
    return module


@pytest.fixture(scope="module")
def served(django_app: ModuleType, tls_files: TLSFiles) -> Iterator[Served]:
    with serve(django_app.app, tls_files) as served:
        yield served


def test_admin_login_with_csrf(served: Served, http_version: str) -> None:
    """GET the login page, POST the credentials with the CSRF token: 302, then the admin: 200.

    On HTTP/2 and HTTP/3 the cookies go as crumbs, a field each, as browsers
    may send them: Django reads them only once the server has joined them.
    """
    browser = Browser(http_version, served, split_cookies=http_version != "1.1")
    login = "/admin/login/?next=/admin/"
    page = browser.get(login)
    assert page.status == 200
    assert page.http_version == http_version
    assert "csrftoken" in browser.cookies
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match is not None
    form = {
        "csrfmiddlewaretoken": match[1],
        "username": USER,
        "password": PASSWORD,
        "next": "/admin/",
    }
    # Over HTTPS, Django also checks that the Referer is the site itself, as a browser sends it.
    referer = {"referer": served.url + login}
    reply = browser.post(login, data=form, headers=referer)
    assert reply.status == 302, reply.text
    assert reply.header("location") == "/admin/"
    assert "sessionid" in browser.cookies
    index = browser.get("/admin/")
    assert index.status == 200
    assert "Site administration" in index.text
    assert USER in index.text


def test_admin_login_without_the_csrf_token_is_403(served: Served, http_version: str) -> None:
    browser = Browser(http_version, served)
    browser.get("/admin/login/")
    form = {"username": USER, "password": PASSWORD}
    reply = browser.post("/admin/login/", data=form, headers={"referer": served.url + "/"})
    assert reply.status == 403
    assert "sessionid" not in browser.cookies


def test_1_mib_post(served: Served, http_version: str) -> None:
    body = os.urandom(MIB)
    reply = Browser(http_version, served).post(
        "/echo", content=body, headers={"content-type": "application/octet-stream"}
    )
    assert reply.status == 200, reply.text
    assert reply.json() == {"size": MIB, "sha256": hashlib.sha256(body).hexdigest()}


def test_1_mib_multipart_upload(served: Served, http_version: str) -> None:
    data = os.urandom(MIB)
    reply = Browser(http_version, served).post(
        "/upload",
        data={"note": "a mebibyte"},
        files={"file": ("random.bin", data, "application/octet-stream")},
    )
    assert reply.status == 200, reply.text
    assert reply.json() == {
        "note": "a mebibyte",
        "filename": "random.bin",
        "size": MIB,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_json_get_and_post(served: Served, http_version: str) -> None:
    browser = Browser(http_version, served)
    reply = browser.get("/items?name=caf%C3%A9&count=2")
    assert reply.status == 200
    assert reply.json() == {"name": "café", "count": 2, "http_version": http_version}
    payload = {"list": [1, 2, 3], "text": "héllo"}
    assert browser.post("/json", json=payload).json() == {"received": payload}


def test_form_post(served: Served, http_version: str) -> None:
    reply = Browser(http_version, served).post("/form", data={"name": "Ada", "colour": "vert"})
    assert reply.status == 200
    assert reply.json() == {"fields": {"name": "Ada", "colour": "vert"}}


def test_streaming_and_server_sent_events(served: Served, http_version: str) -> None:
    browser = Browser(http_version, served)
    reply = browser.get("/stream")
    assert reply.status == 200
    assert reply.text == "".join(f"line {number}\n" for number in range(10))
    assert reply.header("content-length") is None
    reply = browser.get("/events")
    assert reply.header("content-type") == "text/event-stream"
    assert reply.text == "".join(f"event: tick\ndata: {number}\n\n" for number in range(3))
