"""Turn results.json (written by python3 -m hitless_testkit.bench) into
docs/bench.md (tables) and docs/bench.png (plot, drawn with gnuplot).

    python3 -m hitless_testkit.bench.report [results.json] [--docs DIR]

Every figure is the median over the runs, with [min-max] beside it.
"""
