"""Run a script, dumping every thread's Python stack if it gets SIGTERM (e.g. from
`timeout`), so a run that overstays shows where it was. Usage: python bench/with_stacks.py SCRIPT ARGS"""
import faulthandler
import runpy
import signal
import sys

faulthandler.register(signal.SIGTERM, all_threads=True)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
