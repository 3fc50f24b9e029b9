"""`python -m trainer train|prepare …` — what `torchrun --nproc-per-node N -m trainer train …` runs."""

import typer

from trainer.cli import register

app = typer.Typer(no_args_is_help=True, add_completion=False, help="The trainledger trainer.")
register(app)

if __name__ == "__main__":
    app()
