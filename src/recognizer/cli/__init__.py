"""The `recognizer` command, one module per subcommand.

main.py       the parser; main() only forwards to the chosen subcommand
arguments.py  the argparse types and flags the subcommands share
serve.py      `recognizer serve`, configured by recognizer.config
classify.py   `recognizer classify IMAGE...`
stream.py     `recognizer stream SOURCE`
bench.py      `recognizer bench`, over the load generator (recognizer.bench)
health.py     `recognizer health`
models.py     `recognizer models list|load|unload|reload`
"""
