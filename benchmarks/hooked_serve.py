"""`lmx_serve` with the benchmark hook (benchmarks.server_hook) installed: the benchmark's own
launcher, so the product's serve command carries no diagnostics.

    LMX_BENCH_HOOK=<control file> python -m benchmarks.hooked_serve [lmx_serve options]
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lmx_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from benchmarks import server_hook

    server_hook.install(os.environ["LMX_BENCH_HOOK"])
    call_command("lmx_serve", *sys.argv[1:])


if __name__ == "__main__":
    main()
