"""LMX settings: every operator-facing knob comes from the environment (see .env.example)."""

import os
from pathlib import Path

import environ

# transformers prints an advisory about PyTorch on import; LMX never uses PyTorch.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A service names its .env (LMX_ENV_FILE, written by `manage.py lmx_service install`); variables
# already in the environment win over the file.
ENV_FILE = Path(os.environ.get("LMX_ENV_FILE") or BASE_DIR / ".env").expanduser()
environ.Env.read_env(ENV_FILE, overwrite=False)

DATA_DIR = Path(env.str("LMX_DATA_DIR", default=str(BASE_DIR / "var"))).expanduser()
DATA_DIR.mkdir(parents=True, exist_ok=True)  # the SQLite file lives here by default

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="lmx-local-only-change-me-when-serving-a-lan")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("LMX_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
# Web pages (origins, e.g. http://localhost:3000) allowed to write to LMX from a browser besides
# LMX's own pages (lmx_site.origins).
LMX_ALLOWED_ORIGINS = env.list("LMX_ALLOWED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "monitoring",
    "inference",
    "benchmarks",  # lmx_bench* commands only; nothing of LMX imports it
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "lmx_site.urls"
ASGI_APPLICATION = "lmx_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'lmx.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The server and management commands share the file; wait instead of failing on a lock.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("timeout", 20)

CHANNEL_LAYERS = {
    "default": (
        {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [env.str("LMX_REDIS_URL")]},
        }
        if env.str("LMX_REDIS_URL", default="")
        else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    )
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# LMX itself. Read at use through inference.conf, never cached at import.
LMX_HOST = env.str("LMX_HOST", default="127.0.0.1")
LMX_PORT = env.int("LMX_PORT", default=1234)
LMX_MODELS_DIR = Path(env.str("LMX_MODELS_DIR", default=str(DATA_DIR / "models"))).expanduser()
LMX_EXTRA_MODEL_DIRS = [Path(p).expanduser() for p in env.list("LMX_EXTRA_MODEL_DIRS", default=[])]
LMX_HF_CACHE = env.str("LMX_HF_CACHE", default="")  # empty: huggingface_hub's own cache
LMX_DEFAULT_MODEL = env.str("LMX_DEFAULT_MODEL", default="SmolLM2-135M-Instruct")
LMX_ADMIN_TOKEN = env.str("LMX_ADMIN_TOKEN", default="")
LMX_API_KEYS = env.str("LMX_API_KEYS", default="")  # keys for /v1/*: comma-separated, or a file
LMX_MAX_CONCURRENT = env.int("LMX_MAX_CONCURRENT", default=32)
LMX_MAX_QUEUE = env.int("LMX_MAX_QUEUE", default=64)
LMX_REQUEST_TIMEOUT_S = env.float("LMX_REQUEST_TIMEOUT_S", default=600.0)
LMX_MAX_BODY_BYTES = env.int("LMX_MAX_BODY_BYTES", default=4 * 1024 * 1024)
LMX_JIT_LOAD = env.bool("LMX_JIT_LOAD", default=True)  # a request naming a model on disk loads it
LMX_MAX_MODELS = env.int("LMX_MAX_MODELS", default=3)  # resident at once (inference.pool)
LMX_MEMORY_BUDGET_GB = env.float("LMX_MEMORY_BUDGET_GB", default=0.0)  # 0: the warning threshold
LMX_MODEL_TTL_S = env.float("LMX_MODEL_TTL_S", default=-1.0)  # idle seconds before unload; -1 never
LMX_MODEL_ALIASES = env.str("LMX_MODEL_ALIASES", default="")  # alias=model pairs, or a file of them
LMX_PROMPT_CACHE_SIZE = env.int("LMX_PROMPT_CACHE_SIZE", default=16)
LMX_PROMPT_CACHE_BYTES = env.int("LMX_PROMPT_CACHE_BYTES", default=2 * 1024**3)
# The prompt caches' disk tier (inference.engine.disk_cache): 0 bytes turns it off.
LMX_PROMPT_CACHE_DIR = Path(
    env.str("LMX_PROMPT_CACHE_DIR", default=str(DATA_DIR / "prompt-cache"))
).expanduser()
LMX_PROMPT_CACHE_DISK_BYTES = env.int("LMX_PROMPT_CACHE_DISK_BYTES", default=10 * 1024**3)
LMX_PROMPT_CACHE_BLOCK = env.int("LMX_PROMPT_CACHE_BLOCK", default=256)  # tokens a disk block holds
# The model store's scan: how long a request waits for a new scan, how often the watcher looks
LMX_STORE_SCAN_WAIT_S = env.float("LMX_STORE_SCAN_WAIT_S", default=5.0)
LMX_STORE_POLL_S = env.float("LMX_STORE_POLL_S", default=2.0)
LMX_EVENTS_THROUGHPUT_S = env.float("LMX_EVENTS_THROUGHPUT_S", default=1.0)
LMX_EVENTS_MEMORY_S = env.float("LMX_EVENTS_MEMORY_S", default=1.0)
LMX_EVENTS_HEARTBEAT_S = env.float("LMX_EVENTS_HEARTBEAT_S", default=5.0)
LMX_ERROR_RETENTION_DAYS = env.int("LMX_ERROR_RETENTION_DAYS", default=90)
LMX_RESPONSE_RETENTION_DAYS = env.int("LMX_RESPONSE_RETENTION_DAYS", default=30)
LMX_CPU_FAST_PATH = env.str("LMX_CPU_FAST_PATH", default="auto")  # auto | on | off
LMX_BATCH_LAYERS = env.str("LMX_BATCH_LAYERS", default="auto")  # auto | on | off
LMX_MODEL_THREADS = env.str("LMX_MODEL_THREADS", default="auto")  # auto | on | off
LMX_PREFILL_CHUNK = env.str("LMX_PREFILL_CHUNK", default="auto")  # tokens a prompt advances a step
LMX_MIXED_ROUNDS = env.str("LMX_MIXED_ROUNDS", default="off")  # decoding + prompt chunk in one pass
LMX_PREFILL_BUCKETS = env.str(
    "LMX_PREFILL_BUCKETS", default="auto"
)  # auto | on | off (inference.engine.solo)
LMX_WARM_UP = env.str("LMX_WARM_UP", default="background")  # background | load (inference.engine.warming)
LMX_SHORT_ATTENTION = env.str(
    "LMX_SHORT_ATTENTION", default="auto"
)  # auto | on | off (inference.engine.mlx_compat.attention)
# Scale-out (inference.engine.distributed): how a model is split over a group's ranks, how long
# rank 0 waits on the group before it calls a rank lost, and the backend mx.distributed uses.
LMX_SHARDING = env.str("LMX_SHARDING", default="auto")  # auto | tensor | pipeline
LMX_DISTRIBUTED_TIMEOUT_S = env.float("LMX_DISTRIBUTED_TIMEOUT_S", default=30.0)
LMX_DISTRIBUTED_BACKEND = env.str(
    "LMX_DISTRIBUTED_BACKEND", default="ring"
)  # ring | jaccl | nccl | mpi | any
LMX_MEMORY_WARNING_PCT = env.float("LMX_MEMORY_WARNING_PCT", default=85.0)
LMX_MEMORY_CRITICAL_PCT = env.float("LMX_MEMORY_CRITICAL_PCT", default=90.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"lmx": {"()": "lmx_site.logging.LevelPrefixFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "lmx",
        },
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "lmx",
            "level": "WARNING",
        },
    },
    "loggers": {
        "lmx": {"handlers": ["stdout", "stderr"], "level": "INFO", "propagate": False},
        "django": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}
