from django.db import models


class Severity(models.TextChoices):
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class ErrorEvent(models.Model):
    """One error-coded answer LMX gave, kept for operators."""

    code = models.CharField(max_length=40, db_index=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, db_index=True)
    message = models.TextField()
    model = models.CharField(max_length=300, blank=True, db_index=True)
    endpoint = models.CharField(max_length=200, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.code} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class ModelFormat(models.TextChoices):
    MLX = "mlx"
    GGUF = "gguf"


class ModelRecord(models.Model):
    """A model found on disk (model store or Hugging Face cache), with its load history."""

    model_id = models.CharField(max_length=300, unique=True)
    path = models.CharField(max_length=1000)
    format = models.CharField(max_length=8, choices=ModelFormat.choices)
    source = models.CharField(max_length=20, default="local")
    size_bytes = models.BigIntegerField(default=0)
    quantization = models.CharField(max_length=40, blank=True)
    architecture = models.CharField(max_length=60, blank=True)
    parameter_count = models.BigIntegerField(null=True, blank=True)
    present = models.BooleanField(default=True, db_index=True)
    loaded = models.BooleanField(default=False, db_index=True)
    load_count = models.PositiveIntegerField(default=0)
    last_loaded_at = models.DateTimeField(null=True, blank=True)
    last_load_time_ms = models.PositiveIntegerField(null=True, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_id"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.model_id
