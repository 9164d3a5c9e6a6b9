"""What the benchmark commands share (a leading underscore keeps Django from listing it)."""

from pathlib import Path

from django.core.management.base import CommandError

from inference import conf, resolve, store
from inference.store import ModelSpec


def mlx_model(ref: str | None, *, why_mlx: str) -> ModelSpec:
    """The MLX-native model `ref` names (default LMX_DEFAULT_MODEL), or a CommandError saying why not."""
    ref = ref or conf.get("LMX_DEFAULT_MODEL")
    spec = resolve.resolve_local(ref, store.scan())
    if spec is None:
        raise CommandError(f"Model {ref!r} is not in the model store; see GET /admin/models.")
    if spec.format != "mlx":
        raise CommandError(why_mlx)
    return spec


def publish(command, table: str, out: str | None) -> None:
    """Print the table, and append it to `out` (e.g. docs/BENCHMARKS.md) when given."""
    command.stdout.write(table)
    if out:
        with Path(out).open("a") as f:
            f.write("\n" + table)
