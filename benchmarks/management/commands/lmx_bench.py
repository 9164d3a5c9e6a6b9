"""python manage.py lmx_bench: LMX vs mlx-lm in-process vs mlx_lm.server, one table with ratios."""

from django.core.management.base import BaseCommand, CommandError

from benchmarks.management.commands._bench import mlx_model, publish
from benchmarks.random_model import SHAPES
from benchmarks.run import Options, run


class Command(BaseCommand):
    help = (
        "Measure prompt/decode tok/s and TTFT for one stream and aggregate tok/s at several "
        "concurrencies through LMX, mlx-lm in-process and mlx_lm.server on the same model."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", help="an MLX-native model id or path (default: LMX_DEFAULT_MODEL)")
        parser.add_argument(
            "--shape", choices=sorted(SHAPES), help="build (if missing) and use a random model"
        )
        parser.add_argument("--gguf", help="a GGUF copy of the same weights, for the GGUF vs MLX row")
        parser.add_argument("--streams", default="1,4,8,32")
        parser.add_argument("--prompt-tokens", type=int, default=256)
        parser.add_argument("--gen-tokens", type=int, default=128)
        parser.add_argument("--sweep-prompt-tokens", type=int, default=32)
        parser.add_argument("--conversation-tokens", type=int, default=2000)
        parser.add_argument("--trials", type=int, default=5, help="single-stream trials per system (median)")
        parser.add_argument("--url", help="a running LMX serving the model (default: start one)")
        parser.add_argument("--no-peer", action="store_true", help="skip mlx_lm.server")
        parser.add_argument("--no-inprocess", action="store_true", help="skip mlx-lm in-process")
        parser.add_argument("--no-lmx", action="store_true", help="workloads: mlx_lm.server only")
        parser.add_argument(
            "--two-models",
            action="store_true",
            help="the pool's rows: a twin of the model resident beside it; a JIT load against POST load",
        )
        parser.add_argument(
            "--workload",
            choices=["agent", "mixed", "cold"],
            help="only this workload, LMX against mlx_lm.server: agent sessions with long prefixes "
            "over several turns, streams decoding while a long prompt arrives, or start-to-ready "
            "with empty kernel caches (cold)",
        )
        parser.add_argument(
            "--cold-prompt-tokens", type=int, default=2000, help="cold: the first request's prompt tokens"
        )
        parser.add_argument(
            "--cold-warm-up", default="background,load", help="cold: the LMX_WARM_UP values LMX runs under"
        )
        parser.add_argument("--sessions", type=int, default=8, help="agent: sessions at once")
        parser.add_argument("--prefix-tokens", type=int, default=12000, help="agent: each session's prefix")
        parser.add_argument("--turns", type=int, default=8, help="agent: turns per session")
        parser.add_argument("--turn-tokens", type=int, default=300, help="agent: tokens a user turn adds")
        parser.add_argument("--reply-tokens", type=int, default=64, help="agent: tokens of each reply")
        parser.add_argument(
            "--ram-cache-mb",
            type=int,
            help="agent: both servers' RAM prompt-cache budget (default: a quarter of the need)",
        )
        parser.add_argument("--mixed-streams", type=int, default=16, help="mixed: streams decoding")
        parser.add_argument("--long-tokens", type=int, default=8000, help="mixed: the prompt that arrives")
        parser.add_argument(
            "--lmx-env", action="append", default=[], help="mixed/agent: NAME=VALUE for LMX (repeatable)"
        )
        parser.add_argument(
            "--ranks",
            type=int,
            default=1,
            help="serve the model over this many ranks (lmx_serve --ranks) against 1 rank and "
            "mlx_lm.server's distributed mode; --streams then defaults to 8,32",
        )
        parser.add_argument(
            "--backend", default="ring", help="--ranks: the mx.distributed backend (ring, nccl, ...)"
        )
        parser.add_argument("--out", help="append the table to this markdown file (e.g. docs/BENCHMARKS.md)")

    def handle(self, *args, **o):
        ref = o["model"]
        if o["shape"]:
            from django.core.management import call_command

            call_command("lmx_build_random", o["shape"])
            ref = f"random-{o['shape']}-4bit"
        spec = mlx_model(
            ref, why_mlx="mlx-lm and mlx_lm.server read MLX-native folders only; pass --gguf for GGUF."
        )
        if o["workload"]:
            publish(self, self._workload(spec, o), o["out"])
            return
        if o["ranks"] > 1:
            publish(self, self._group(spec, o), o["out"])
            return
        try:
            streams = sorted({int(s) for s in o["streams"].split(",")})
        except ValueError as exc:
            raise CommandError("--streams takes comma-separated integers, e.g. 1,4,8,32") from exc
        opts = Options(
            model_id=spec.id,
            model_path=spec.path,
            streams=streams,
            prompt_tokens=o["prompt_tokens"],
            gen_tokens=o["gen_tokens"],
            sweep_prompt_tokens=o["sweep_prompt_tokens"],
            conversation_tokens=o["conversation_tokens"],
            trials=o["trials"],
            gguf_id=o["gguf"],
            inprocess=not o["no_inprocess"],
            peer=not o["no_peer"],
            url=o["url"],
            two_models=o["two_models"],
        )
        publish(self, run(opts, log=lambda msg: self.stderr.write(msg)), o["out"])

    def _group(self, spec, o) -> str:
        from benchmarks.distributed import GroupOptions, run_group

        streams = o["streams"] if o["streams"] != "1,4,8,32" else "8,32"
        opts = GroupOptions(
            model_id=spec.id,
            model_path=spec.path,
            ranks=o["ranks"],
            streams=sorted({int(s) for s in streams.split(",") if int(s) > 1}),
            prompt_tokens=o["prompt_tokens"],
            gen_tokens=o["gen_tokens"],
            trials=o["trials"],
            peer=not o["no_peer"],
            backend=o["backend"],
        )
        return run_group(opts, log=lambda msg: self.stderr.write(msg))

    def _workload(self, spec, o) -> str:
        import json
        from pathlib import Path

        from mlx_lm.utils import load_tokenizer

        from benchmarks import workloads
        from benchmarks.run import Options

        workdir = Options(model_id=spec.id, model_path=spec.path, streams=[1]).workdir
        workdir.mkdir(parents=True, exist_ok=True)
        tokenizer = load_tokenizer(Path(spec.path))
        target = workloads.Target(
            model_id=spec.id,
            model_path=spec.path,
            tokenizer=tokenizer,
            workdir=workdir,
            log=lambda msg: self.stderr.write(msg),
            lmx=not o["no_lmx"],
            peer=not o["no_peer"],
            env=dict(pair.split("=", 1) for pair in o["lmx_env"]),
        )
        if o["workload"] == "cold":
            from benchmarks.cold_start import ColdOptions, run_cold

            modes = tuple(o["cold_warm_up"].split(","))
            return run_cold(target, ColdOptions(prompt_tokens=o["cold_prompt_tokens"], lmx_modes=modes))
        if o["workload"] == "mixed":
            opts = workloads.MixedOptions(streams=o["mixed_streams"], long_tokens=o["long_tokens"])
            return workloads.run_mixed(target, opts)
        opts = workloads.AgentOptions(
            sessions=o["sessions"],
            prefix_tokens=o["prefix_tokens"],
            turns=o["turns"],
            turn_tokens=o["turn_tokens"],
            reply_tokens=o["reply_tokens"],
        )
        config = json.loads((Path(spec.path) / "config.json").read_text())
        opts.ram_cache_bytes = (
            o["ram_cache_mb"] * 1_000_000 if o["ram_cache_mb"] else workloads.default_ram_budget(config, opts)
        )
        return workloads.run_agent(target, opts)
