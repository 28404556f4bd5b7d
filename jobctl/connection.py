"""How a command reaches the daemon: the global options as a `Connection` (the socket, or
the URL and its token or signing key), the choice between them, and `pass_connection`, which hands a
command its connection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
from click.core import ParameterSource

from jobctl.client import Client, Endpoint, JobctlError, check_url, load_token
from jobctl.defaults import default_data_dir, default_socket


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """The global options. The client is built on first use, so that `--help` needs no token."""

    socket: Path | None
    url: str | None
    token: str | None
    data_dir: Path | None
    key_id: str | None = None
    secret: str | None = None

    def client(self) -> Client:
        if self.url is None:
            return Client(Endpoint(socket=self.socket or default_socket()))
        if self.key_id or self.secret:
            if not (self.key_id and self.secret):
                raise JobctlError("a signing key needs both --key-id and --secret")
            return Client(Endpoint(url=self.url, key_id=self.key_id, secret=self.secret))
        token = self.token or load_token(self.data_dir or default_data_dir())
        return Client(Endpoint(url=self.url, token=token))


def pick_transport(
    socket: Path | None,
    socket_source: ParameterSource | None,
    url: str | None,
    url_source: ParameterSource | None,
) -> tuple[Path | None, str | None]:
    """A flag beats an environment variable; a URL beats a socket from the same place."""
    if socket is None or url is None:
        return socket, url
    if socket_source == url_source == ParameterSource.COMMANDLINE:
        raise click.UsageError("--socket and --url are mutually exclusive")
    if socket_source == ParameterSource.COMMANDLINE:
        return socket, None
    return None, url


def check_url_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--url's callback: a URL that check_url refuses is a usage error."""
    try:
        return check_url(value) if value else None
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None


pass_connection = click.make_pass_decorator(Connection)
