"""The `recognizer` command, one module per subcommand.

main.py       the parser; main() only forwards to the chosen subcommand
arguments.py  the argparse types and flags the subcommands share
serve.py      `recognizer serve`, configured by recognizer.config
classify.py   `recognizer classify IMAGE...`
stream.py     `recognizer stream SOURCE`
(`recognizer bench` lives with its load generator, in recognizer.bench.command)
"""
