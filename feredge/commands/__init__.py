"""The top of the pipeline: the `feredge` command line and what each command does (predict, eval, export,
bench, run-camera, serve, explain, the model package). Nothing below imports from here."""
