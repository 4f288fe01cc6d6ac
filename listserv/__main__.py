"""Run the command line: python -m listserv."""
from listserv.cli import main

main()
