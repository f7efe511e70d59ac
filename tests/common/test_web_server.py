"""The web server as the README's production section runs it."""

from gunicorn.config import Config
from gunicorn.http import message


def test_gunicorn_parses_requests_with_its_c_parser():
    """``gunicorn_h1c`` is a dependency so that gunicorn parses requests in C; without it, or with
    a version too old, gunicorn falls back to its Python parser without a word."""
    assert message._check_fast_parser(Config()) is True
