"""Command-line verbs of ``packnet-ros`` (demo, bag, evaluate, train, export, benchmark): the top
layer, built on the core, io, evaluation, training and ros packages (nothing imports apps)."""
