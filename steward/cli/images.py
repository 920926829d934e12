"""``steward images build``: Steward's container images on the local Docker engine (steward.images)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steward.cli.common import console, fail

app = typer.Typer(name="images", help="Build Steward's container images on a Docker engine.", no_args_is_help=True)


@app.command()
def build(
    names: Annotated[list[str] | None, typer.Argument(
        help="Images to build: postgres, mlflow, gateway, worker (default: all).")] = None,
    base: Annotated[str, typer.Option(
        help="local: make a Debian base here with debootstrap (no registry needed); public: the Dockerfiles' "
             "public bases, pulled.")] = "local",
    ca_bundle: Annotated[Path | None, typer.Option(
        help="CA bundle the build stages trust (a TLS-inspecting proxy); never copied into a runtime image. "
             "Default: the host's, when it has one.")] = None,
    no_ca_bundle: Annotated[bool, typer.Option("--no-ca-bundle", help="Give the build stages no CA bundle.")] = False,
) -> None:
    """Build the PostgreSQL, MLflow, gateway and worker images, tagged with the project's version."""
    from steward import images

    try:
        choice = images.BaseChoice(base)
    except ValueError:
        fail(f"--base must be one of {[c.value for c in images.BaseChoice]}, not {base!r}")
    bundle = None if no_ca_bundle else ca_bundle or (images.HOST_CA_BUNDLE if images.HOST_CA_BUNDLE.exists() else None)
    if bundle is not None and not bundle.is_file():
        fail(f"--ca-bundle {bundle} is not a file")
    try:
        client = images.docker_client()
        built = images.build_images(client, choice, names=tuple(names or ()), ca_bundle=bundle, echo=console.print)
    except images.ImageError as error:
        fail(str(error))
    console.print("\n[bold]image[/]                          size")
    for image in built:
        console.print(f"{image.tag:<30} {image.size_mb:6.0f} MB   ({image.seconds:.0f} s to build)")
