"""GGUF files as llama.cpp writes them, read with llama.cpp's own `gguf` package (gguf-py).

No MLX here: the model store (server side) and the engine's loader share this package. The
engine turns what it describes into MLX arrays (inference.engine.gguf).
"""
