"""The science behind the experiments, importable by an analysis script.

Each module is one topic's studies: what a study draws (networks, data, seeds),
what it measures, and what theory predicts for it, as functions of explicit
arguments that return arrays and dicts. ``experiments/`` holds only the configs,
figures and summaries around them. Import a topic's module itself, e.g.
``from jaxgrad.studies import <topic>``.
"""
