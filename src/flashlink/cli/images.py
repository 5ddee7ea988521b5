"""``flashlink images``: run the image cache service, mint tokens, fetch SIFs."""

from __future__ import annotations

__all__ = ["app"]

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flashlink.errors import FlashlinkError
from flashlink.images.client import ImagesClient
from flashlink.images.errors import ConfigError
from flashlink.images.settings import load_settings, sample_toml

app = typer.Typer(
    name="images",
    help="Image cache: build each container image into a SIF once, serve it from S3 to every job.",
    no_args_is_help=True,
)
_err = Console(stderr=True)

_URL = typer.Option("--url", envvar="FLASHLINK_IMAGES_URL", help="base URL of the image service")
_Config = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="FLASHLINK_IMAGES_CONFIG",
        exists=True,
        dir_okay=False,
        help="images.toml (see `flashlink images config`); env FLASHLINK_IMAGES_* override it",
    ),
]


def _fail(exc: FlashlinkError) -> typer.Exit:
    _err.print(f"[red]error:[/red] {exc}", highlight=False)
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)


@app.command()
def serve(
    config: _Config = None,
    host: Annotated[str | None, typer.Option(help="override server.host")] = None,
    port: Annotated[int | None, typer.Option(help="override server.port")] = None,
) -> None:
    """Run the service (FastAPI under uvicorn) until interrupted."""
    import uvicorn  # noqa: PLC0415 - only this command serves

    from flashlink.images.service import app_from_settings  # noqa: PLC0415 - imports boto3

    try:
        settings = load_settings(config)
        if host is not None:
            settings.server.host = host
        if port is not None:
            settings.server.port = port
        service = app_from_settings(settings)
    except FlashlinkError as exc:
        raise _fail(exc) from None
    level = settings.server.log_level
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        service,
        host=settings.server.host,
        port=settings.server.port,
        log_level=level,
        # one process: the in-process build queue and its dedupe live in it; scale out with
        # more replicas on one bucket instead (their leases keep builds unique)
        workers=1,
    )


@app.command()
def config() -> None:
    """Print a commented images.toml with every setting, its default and its env variable."""
    typer.echo(sample_toml())


@app.command()
def token(
    url: Annotated[str, _URL],
    master_token: Annotated[
        str,
        typer.Option(
            envvar="FLASHLINK_IMAGES_AUTH_MASTER_TOKEN", help="the service's master token"
        ),
    ],
    ttl: Annotated[
        float | None, typer.Option(help="validity in seconds (default: the service's)")
    ] = None,
    subject: Annotated[
        str, typer.Option(help="who the token is for, e.g. namespace/pod")
    ] = "client",
) -> None:
    """Mint a read-only client token; prints only the token, for T=$(flashlink images token)."""
    try:
        with ImagesClient(url) as client:
            issued = client.mint_token(master_token, ttl_seconds=ttl, subject=subject)
    except FlashlinkError as exc:
        raise _fail(exc) from None
    typer.echo(issued.token)


_Token = Annotated[
    str, typer.Option(envvar="FLASHLINK_IMAGES_TOKEN", help="client token (X-Token)")
]


@app.command()
def get(
    reference: Annotated[str, typer.Argument(help="image reference, e.g. ghcr.io/org/img:1.0")],
    *,
    url: Annotated[str, _URL],
    token: _Token,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the SIF here")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="node cache: download once into DIR/<sha256>.sif (locked)"),
    ] = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for a build")] = 600.0,
) -> None:
    """Fetch an image's SIF (waiting while it is built); prints the file's path."""
    try:
        with ImagesClient(url, token=token) as client, _err.status(f"fetching {reference}"):
            if cache_dir is not None and output is None:
                path = client.fetch_cached(reference, cache_dir, wait=wait)
            elif output is not None and cache_dir is None:
                client.fetch(reference, output, wait=wait)
                path = output
            else:
                raise ConfigError("give exactly one of --output and --cache-dir")
    except FlashlinkError as exc:
        raise _fail(exc) from None
    typer.echo(str(path))


@app.command()
def meta(
    reference: Annotated[str, typer.Argument(help="image reference")],
    url: Annotated[str, _URL],
    token: _Token,
    wait: Annotated[float, typer.Option(help="seconds to wait for a build")] = 0.0,
) -> None:
    """Print an image's metadata (size, sha256, built-at, source digest) as JSON."""
    try:
        with ImagesClient(url, token=token) as client:
            found = client.meta(reference, wait=wait)
    except FlashlinkError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(found.model_dump(), indent=2))


@app.command()
def evict(
    config: _Config = None,
    max_age: Annotated[float | None, typer.Option(help="seconds; default eviction.max_age")] = None,
    max_total_bytes: Annotated[
        int | None, typer.Option(help="bytes; default eviction.max_total_bytes")
    ] = None,
) -> None:
    """Evict cache entries once (the service also does it every eviction.interval)."""
    from flashlink.images.service import cache_from_settings  # noqa: PLC0415 - imports boto3

    try:
        settings = load_settings(config)
        age = max_age if max_age is not None else settings.eviction.max_age
        size = max_total_bytes if max_total_bytes is not None else settings.eviction.max_total_bytes
        if age is None and size is None:
            raise ConfigError("eviction: give --max-age or --max-total-bytes (or set them)")
        cache = cache_from_settings(settings)
        try:
            removed = cache.evict(max_age=age, max_total_bytes=size)
        finally:
            cache.close()
    except FlashlinkError as exc:
        raise _fail(exc) from None
    for key in removed:
        typer.echo(key)
