"""davpack's benchmark suite (``make bench``, ``python -m bench``): see bench/README.md."""
