"""`lmx_bench`: LMX against mlx-lm in-process and mlx_lm.server, on the same model and machine."""
