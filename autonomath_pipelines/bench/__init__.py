"""Benchmarks: figures a command prints (and plots), never tests. One module per benchmark —
``loop_h`` (loop H's cost, cache hit vs cold search), ``loops`` (every loop's cost, cold and warm),
``load`` (1× and 10× the service side by side, writers at once), ``scaling`` (loops A and E at
10k–1M window rows), ``clustering`` (the DBSCAN core) — and ``process``, the fresh-interpreter child
runner they share. ``autonomath-loops bench [loop-h|loops|load|scaling|clustering]`` runs them."""
