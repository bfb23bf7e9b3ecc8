"""Reproduction tooling: collect runs' ``results.json``, select learning rates by validation as
the paper does, write the paper's tables (:mod:`.aggregate`) and draw its figures (:mod:`.plots`).
The paper's printed values live in :mod:`.paper`."""
