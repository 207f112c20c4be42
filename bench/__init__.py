"""pygear's benchmark suite: ``python -m bench`` (``make bench``).

Development tooling only: the package itself stays compile-free.  The suite
starts its own gearmand, builds a small C reference client and worker with
libgearman when a compiler and the headers are present, and compares
libgearman from C, pygear (CPython and PyPy) and ``gear`` in alternating
rounds of one run.  See BENCHMARKS.md for the results.
"""
