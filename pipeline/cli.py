"""The `artmator` command line. Each sub-command lives next to the code it drives and is registered here."""
from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="artmator")
def main() -> None:
    """artmator: painted portraits -> 3D-aware, expression-editable heads (3DArtmator), at catalog scale."""
    from artmator.pipeline.console import quiet_known_ray_lines

    click.get_current_context().with_resource(quiet_known_ray_lines())


def _register() -> None:
    from artmator.pipeline import commands

    for command in commands.ALL:
        main.add_command(command)


_register()
