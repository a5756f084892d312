"""A Django project in one file, served by hface unchanged: ``hface server django_app:app``.

The admin (with its login and CSRF protection), JSON views, form and
multipart posts, a raw body echo, streamed responses and server-sent
events; the database is SQLite, at ``$HFACE_DJANGO_DB`` (default
``db.sqlite3``). Make it once with ``python django_app.py migrate`` and
``python django_app.py createsuperuser`` (docs/frameworks/django.rst);
tests/test_frameworks/test_django.py does the same in a temporary directory.

Django's ASGI handler does not speak the lifespan protocol: the server
notices and goes on without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="hface-example-not-secret",  # an example: use your own, from the environment
    ALLOWED_HOSTS=["localhost", "127.0.0.1", "[::1]"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
    ],
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    TEMPLATES=[
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("HFACE_DJANGO_DB", "db.sqlite3"),
        }
    },
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    STATIC_URL="/static/",
    USE_TZ=True,
)
django.setup()

# Below django.setup(): these need the settings and the application registry.
from django.contrib import admin  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import (  # noqa: E402
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402


async def items(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {
            "name": request.GET["name"],
            "count": int(request.GET.get("count", "1")),
            "http_version": request.scope["http_version"],
        }
    )


async def post_json(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"received": json.loads(request.body)})


async def post_form(request: HttpRequest) -> HttpResponse:
    form = request.POST
    return JsonResponse({"fields": {"name": form["name"], "colour": form["colour"]}})


async def upload(request: HttpRequest) -> HttpResponse:
    file = request.FILES["file"]
    data = file.read()
    return JsonResponse(
        {
            "note": request.POST["note"],
            "filename": file.name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    )


async def echo(request: HttpRequest) -> HttpResponse:
    """The raw body's size and digest (a 1 MiB POST in the tests)."""
    body = request.body
    return JsonResponse({"size": len(body), "sha256": hashlib.sha256(body).hexdigest()})


async def stream(request: HttpRequest) -> HttpResponse:
    async def lines() -> AsyncIterator[bytes]:
        for number in range(10):
            yield f"line {number}\n".encode()

    return StreamingHttpResponse(lines(), content_type="text/plain")


async def events(request: HttpRequest) -> HttpResponse:
    async def sse() -> AsyncIterator[bytes]:
        for number in range(3):
            yield f"event: tick\ndata: {number}\n\n".encode()

    return StreamingHttpResponse(sse(), content_type="text/event-stream")


# The views that take posts from other clients than the site's own forms
# are exempt from CSRF checks; the admin's are not.
urlpatterns = [
    path("admin/", admin.site.urls),
    path("items", require_GET(items)),
    path("json", require_POST(csrf_exempt(post_json))),
    path("form", require_POST(csrf_exempt(post_form))),
    path("upload", require_POST(csrf_exempt(upload))),
    path("echo", require_POST(csrf_exempt(echo))),
    path("stream", require_GET(stream)),
    path("events", require_GET(events)),
]

#: The ASGI application.
app = get_asgi_application()

if __name__ == "__main__":  # python django_app.py migrate (or any manage.py command)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
