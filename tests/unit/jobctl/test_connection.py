"""How jobctl reaches the daemon: the socket or the URL, and the URL's check."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.core import ParameterSource

from jobctl.client import check_url
from jobctl.connection import pick_transport

# -- transport choice -----------------------------------------------------------------

FLAG, ENV = ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT
SOCK, URL = Path("/s.sock"), "http://127.0.0.1:8427"


def test_one_transport_given_is_used() -> None:
    assert pick_transport(SOCK, FLAG, None, None) == (SOCK, None)
    assert pick_transport(None, None, URL, ENV) == (None, URL)


def test_a_flag_beats_the_environment() -> None:
    assert pick_transport(SOCK, FLAG, URL, ENV) == (SOCK, None)
    assert pick_transport(SOCK, ENV, URL, FLAG) == (None, URL)


def test_url_beats_socket_from_the_environment() -> None:
    assert pick_transport(SOCK, ENV, URL, ENV) == (None, URL)


def test_both_flags_is_a_usage_error() -> None:
    with pytest.raises(click.UsageError, match="mutually exclusive"):
        pick_transport(SOCK, FLAG, URL, FLAG)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8427", "https://h", "http://h:1/prefix"])
def test_urls_accepted(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8427", "ftp://h", "http://", "http://h:99999", "http://h/?a"]
)
def test_urls_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"(?i)URL|port|query"):
        check_url(url)
