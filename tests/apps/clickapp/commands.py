"""Commands of a real click app (``@click.group()``, ``@group.command()``, ``@click.pass_context``,
``@click.command()``); the functions are reached through the ``Command`` objects only."""

import click


@click.group()
@click.option("--verbose", is_flag=True)
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    ctx.obj = {"verbose": verbose}


@cli.command()
@click.option("--name", default="world")
def hello(name: str) -> None:
    click.echo(greeting(name))


@cli.command()
@click.argument("numbers", nargs=-1, type=int)
@click.pass_context
def total(ctx: click.Context, numbers: tuple[int, ...]) -> None:
    result = sum(numbers)
    click.echo(f"total {result} verbose={ctx.obj['verbose']}")


@click.command()
def standalone() -> None:
    click.echo("standalone")


def greeting(name: str) -> str:
    return f"hello {name}"
